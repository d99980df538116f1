"""The wave planner: waves by priority, lanes of conflicting workers, exclusions with diagnostics."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.instruction import WorkerInstruction
from orchestration.loader import LoadResult, load_workers
from orchestration.planner import WavePlan, plan

PATH_POOL = ["a.py", "b.py", "pkg/c.py", "pkg/d.py", "docs/e.md"]


def worker(
    number: int,
    priority: int = 1,
    paths: list[str] | None = None,
    deps: list[int] | None = None,
) -> WorkerInstruction:
    wid = f"WORKER_{number:03d}"
    dependencies = [f"WORKER_{d:03d}" for d in deps or []]
    return WorkerInstruction(
        worker_id=wid,
        title=f"Worker {number}",
        source=f"{wid}_Test.md",
        content_hash=f"hash-{number}",
        priority=priority,
        priority_rule="explicit",
        deliverable_paths=paths if paths is not None else [f"own/{wid}.py"],
        dependencies=dependencies,
        dependency_lines={dep: 10 + index for index, dep in enumerate(dependencies)},
    )


def plan_of(*workers: WorkerInstruction, priority: int | None = None) -> WavePlan:
    return plan(LoadResult(instructions=list(workers)), priority=priority)


def lanes(result: WavePlan) -> list[tuple[int, list[list[str]]]]:
    return [(wave.priority, [lane.workers for lane in wave.lanes]) for wave in result.waves]


# -- property: any small random set of workers ---------------------------------------------------


@st.composite
def worker_sets(draw: st.DrawFn) -> list[WorkerInstruction]:
    count = draw(st.integers(min_value=1, max_value=9))
    workers = []
    for number in range(1, count + 1):
        workers.append(
            worker(
                number,
                priority=draw(st.integers(min_value=1, max_value=3)),
                paths=draw(st.lists(st.sampled_from(PATH_POOL), max_size=2, unique=True)),
                deps=draw(st.lists(st.integers(min_value=1, max_value=number - 1), max_size=3, unique=True))
                if number > 1
                else [],
            )
        )
    return workers


@settings(max_examples=100, deadline=None)
@given(worker_sets())
def test_plan_invariants_hold_for_random_worker_sets(workers: list[WorkerInstruction]) -> None:
    result = plan_of(*workers)
    by_id = {w.worker_id: w for w in workers}
    planned = result.workers
    errored = {d.file.removesuffix("_Test.md") for d in result.diagnostics if d.severity == "error"}

    # every worker is planned exactly once, or excluded with an error diagnostic
    assert len(planned) == len(set(planned))
    assert set(planned) | errored == set(by_id)
    assert not set(planned) & errored

    # waves ascend by priority and hold only their priority
    assert [wave.priority for wave in result.waves] == sorted({by_id[w].priority for w in planned})
    for wave in result.waves:
        assert all(by_id[w].priority == wave.priority for w in wave.workers)
        assert all(lane.workers for lane in wave.lanes)

    # no path is shared between two lanes of one wave
    for wave in result.waves:
        owners: dict[str, int] = {}
        for index, lane in enumerate(wave.lanes):
            for wid in lane.workers:
                for path in by_id[wid].deliverable_paths:
                    assert owners.setdefault(path, index) == index, f"{path} in two lanes of wave {wave.priority}"

    # a dependency inside a wave runs earlier in the same lane
    for wave in result.waves:
        for lane in wave.lanes:
            for position, wid in enumerate(lane.workers):
                for dep in by_id[wid].dependencies:
                    if dep in wave.workers:
                        assert dep in lane.workers[:position], f"{dep} not before {wid} in its lane"

    # a dependency on a later wave is an error and that worker is not planned
    for wid, instruction in by_id.items():
        later = [dep for dep in instruction.dependencies if by_id[dep].priority > instruction.priority]
        if later:
            assert wid not in planned
            assert any(
                d.file == instruction.source
                and d.severity == "error"
                and "later wave" in d.message
                and any(dep in d.message for dep in later)
                for d in result.diagnostics
            ), f"{wid} depends on later {later} without an error"

    # a planned worker's planned dependencies are in its own or an earlier wave
    for wid in planned:
        for dep in by_id[wid].dependencies:
            if dep in planned:
                assert by_id[dep].priority <= by_id[wid].priority


# -- examples ------------------------------------------------------------------------------------


def test_independent_workers_get_one_lane_each_in_id_order() -> None:
    result = plan_of(worker(3), worker(1), worker(2))

    assert lanes(result) == [(1, [["WORKER_001"], ["WORKER_002"], ["WORKER_003"]])]
    assert result.diagnostics == []


def test_waves_are_ordered_by_priority() -> None:
    result = plan_of(worker(1, priority=3), worker(2, priority=1), worker(3, priority=2))

    assert lanes(result) == [(1, [["WORKER_002"]]), (2, [["WORKER_003"]]), (3, [["WORKER_001"]])]


def test_workers_sharing_a_path_share_a_lane_in_id_order() -> None:
    result = plan_of(worker(2, paths=["x.py"]), worker(1, paths=["x.py"]), worker(3, paths=["y.py"]))

    assert lanes(result) == [(1, [["WORKER_001", "WORKER_002"], ["WORKER_003"]])]


def test_shared_paths_join_lanes_transitively() -> None:
    result = plan_of(worker(1, paths=["x.py"]), worker(2, paths=["x.py", "y.py"]), worker(3, paths=["y.py"]))

    assert lanes(result) == [(1, [["WORKER_001", "WORKER_002", "WORKER_003"]])]


def test_same_wave_dependency_orders_the_lane_before_id_order() -> None:
    result = plan_of(worker(1, deps=[2]), worker(2))

    assert lanes(result) == [(1, [["WORKER_002", "WORKER_001"]])]


def test_dependency_on_an_earlier_wave_does_not_join_lanes() -> None:
    result = plan_of(worker(1, priority=1), worker(2, priority=2, deps=[1]))

    assert lanes(result) == [(1, [["WORKER_001"]]), (2, [["WORKER_002"]])]
    assert result.diagnostics == []


def test_dependency_on_a_later_wave_is_an_error_and_excludes_the_worker() -> None:
    result = plan_of(worker(1, priority=2), worker(2, priority=1, deps=[1]))

    assert lanes(result) == [(2, [["WORKER_001"]])]
    assert [(d.file, d.line, d.severity) for d in result.diagnostics] == [("WORKER_002_Test.md", 10, "error")]
    assert "WORKER_001" in result.diagnostics[0].message
    assert "later wave" in result.diagnostics[0].message


def test_later_wave_dependency_is_an_error_even_when_that_worker_is_excluded_too() -> None:
    result = plan_of(worker(1, priority=3), worker(2, priority=2, deps=[1]), worker(3, priority=1, deps=[2]))

    assert lanes(result) == [(3, [["WORKER_001"]])]
    assert sorted((d.file, d.severity) for d in result.diagnostics) == [
        ("WORKER_002_Test.md", "error"),
        ("WORKER_003_Test.md", "error"),
    ]


def test_dependency_cycle_is_an_error_naming_its_members() -> None:
    result = plan_of(worker(1, deps=[3]), worker(2, deps=[1]), worker(3, deps=[2]), worker(4))

    assert lanes(result) == [(1, [["WORKER_004"]])]
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert sorted(d.file for d in errors) == ["WORKER_001_Test.md", "WORKER_002_Test.md", "WORKER_003_Test.md"]
    for error in errors:
        assert "dependency cycle" in error.message
        assert all(member in error.message for member in ("WORKER_001", "WORKER_002", "WORKER_003"))
        assert error.line == 10


def test_dependency_on_an_invalid_worker_is_a_warning() -> None:
    loaded = LoadResult(instructions=[worker(1), worker(2, deps=[1])], invalid={"WORKER_001"})
    result = plan(loaded)

    assert lanes(result) == [(1, [["WORKER_002"]])]
    assert [(d.file, d.line, d.severity) for d in result.diagnostics] == [("WORKER_002_Test.md", 10, "warning")]


def test_priority_filter_plans_one_wave() -> None:
    result = plan_of(worker(1, priority=1), worker(2, priority=2), worker(3, priority=2), priority=2)

    assert lanes(result) == [(2, [["WORKER_002"], ["WORKER_003"]])]
    assert set(result.instructions) == {"WORKER_002", "WORKER_003"}


def test_priority_filter_for_an_empty_wave_plans_nothing() -> None:
    assert plan_of(worker(1, priority=1), priority=4).waves == []


def test_digest_changes_with_content_and_not_with_input_order() -> None:
    first = plan_of(worker(1), worker(2))
    reordered = plan_of(worker(2), worker(1))
    changed = plan_of(worker(1), worker(2).model_copy(update={"content_hash": "other"}))

    assert first.digest() == reordered.digest()
    assert first.digest() != changed.digest()


# -- the real corpus -----------------------------------------------------------------------------


def test_corpus_semantic_analyzer_workers_share_one_lane_in_id_order(corpus_dir: Path) -> None:
    result = plan(load_workers(corpus_dir))
    first = result.waves[0]
    wanted = [f"WORKER_{n:03d}" for n in range(1, 13)]
    holding = [lane.workers for lane in first.lanes if set(wanted) & set(lane.workers)]

    assert first.priority == 1
    assert len(holding) == 1
    assert [w for w in holding[0] if w in wanted] == wanted


def test_corpus_plan_excludes_only_the_invalid_workers(corpus_dir: Path) -> None:
    loaded = load_workers(corpus_dir)
    result = plan(loaded)

    assert sorted(result.workers) == sorted(i.worker_id for i in loaded.valid)
    assert len(result.workers) == 224
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    assert [wave.priority for wave in result.waves] == [1, 2, 3, 4, 5]
