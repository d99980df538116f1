"""`WavePlan`: waves in ascending priority, lanes of workers that must run in order inside each.

A lane is a connected group of one wave's workers, joined by a shared deliverable path or a
dependency; inside a lane, dependencies come first, then worker id order. Different lanes of a
wave touch disjoint files, so they can run concurrently and merge without conflicts.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator

from pydantic import BaseModel, Field

from orchestration.instruction import Diagnostic, WorkerInstruction
from orchestration.loader import LoadResult


class Lane(BaseModel):
    workers: list[str]


class Wave(BaseModel):
    priority: int
    lanes: list[Lane]

    @property
    def workers(self) -> list[str]:
        return [w for lane in self.lanes for w in lane.workers]


class WavePlan(BaseModel):
    """The executable plan, and the diagnostics planning added to the loader's."""

    waves: list[Wave] = Field(default_factory=list)
    instructions: dict[str, WorkerInstruction] = Field(default_factory=dict)
    diagnostics: list[Diagnostic] = Field(default_factory=list)

    @property
    def workers(self) -> list[str]:
        return [w for wave in self.waves for w in wave.workers]

    def wave(self, priority: int) -> Wave | None:
        return next((w for w in self.waves if w.priority == priority), None)

    def fingerprint(self) -> dict[str, str]:
        """Worker id → content hash of its instruction, to compare a stored plan with a new one."""
        return {w: self.instructions[w].content_hash for w in self.workers}

    def digest(self) -> str:
        lanes = "|".join(",".join(lane.workers) for wave in self.waves for lane in wave.lanes)
        hashes = ",".join(f"{k}={v}" for k, v in sorted(self.fingerprint().items()))
        return hashlib.sha256(f"{lanes}#{hashes}".encode()).hexdigest()[:16]


def plan(loaded: LoadResult, priority: int | None = None) -> WavePlan:
    """Build the plan from the valid instructions; errors exclude a worker, never the run."""
    result = WavePlan()
    candidates = {i.worker_id: i for i in loaded.valid}
    _exclude_cycles(candidates, result.diagnostics)
    _exclude_later_wave_dependencies(candidates, result.diagnostics)
    _warn_unplanned_dependencies(candidates, loaded, result.diagnostics)
    by_priority: dict[int, list[WorkerInstruction]] = defaultdict(list)
    for instruction in candidates.values():
        by_priority[instruction.priority].append(instruction)
    for level in sorted(by_priority):
        if priority is not None and level != priority:
            continue
        members = by_priority[level]
        result.waves.append(Wave(priority=level, lanes=[Lane(workers=lane) for lane in _lanes(members)]))
        result.instructions.update((i.worker_id, i) for i in members)
    return result


def _exclude_cycles(candidates: dict[str, WorkerInstruction], diagnostics: list[Diagnostic]) -> None:
    for component in _strongly_connected(candidates):
        if len(component) < 2:
            continue
        members = sorted(component)
        ring = " → ".join([*members, members[0]])
        for wid in members:
            instruction = candidates[wid]
            diagnostics.append(
                Diagnostic(
                    file=instruction.source,
                    line=_dependency_line(instruction, members),
                    message=f"dependency cycle: {ring}",
                )
            )
        for wid in members:
            del candidates[wid]


def _dependency_line(instruction: WorkerInstruction, members: Iterable[str]) -> int:
    lines = [instruction.dependency_lines[m] for m in members if m in instruction.dependency_lines]
    return min(lines, default=1)


def _exclude_later_wave_dependencies(
    candidates: dict[str, WorkerInstruction], diagnostics: list[Diagnostic]
) -> None:
    """A worker may depend on its own or an earlier wave; a later one can never have run.

    Judged against every candidate as it was before any exclusion here, so the verdict does not
    depend on the order workers are checked in.
    """
    before = dict(candidates)
    changed = True
    while changed:
        changed = False
        for wid, instruction in list(candidates.items()):
            for dep in instruction.dependencies:
                other = before.get(dep)
                if other is not None and other.priority > instruction.priority:
                    diagnostics.append(
                        Diagnostic(
                            file=instruction.source,
                            line=instruction.dependency_lines.get(dep, 1),
                            message=(
                                f"depends on {dep}, which runs in a later wave "
                                f"(priority {other.priority} > {instruction.priority})"
                            ),
                        )
                    )
                    del candidates[wid]
                    changed = True
                    break


def _warn_unplanned_dependencies(
    candidates: dict[str, WorkerInstruction], loaded: LoadResult, diagnostics: list[Diagnostic]
) -> None:
    known = {i.worker_id for i in loaded.instructions}
    for instruction in candidates.values():
        for dep in instruction.dependencies:
            if dep in known and dep not in candidates:
                diagnostics.append(
                    Diagnostic(
                        file=instruction.source,
                        line=instruction.dependency_lines.get(dep, 1),
                        message=f"depends on {dep}, which has errors and is not planned; it will be skipped",
                        severity="warning",
                    )
                )


def _strongly_connected(candidates: dict[str, WorkerInstruction]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iterative (the corpus has chains of 80+ workers)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for root in sorted(candidates):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(_edges(candidates, root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(_edges(candidates, child))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                yield component


def _edges(candidates: dict[str, WorkerInstruction], wid: str) -> list[str]:
    return [d for d in candidates[wid].dependencies if d in candidates]


def _lanes(members: list[WorkerInstruction]) -> list[list[str]]:
    """Union workers sharing a path or a same-wave dependency; order each group topologically."""
    ids = {i.worker_id for i in members}
    parent = {wid: wid for wid in ids}

    def find(wid: str) -> str:
        while parent[wid] != wid:
            parent[wid] = parent[parent[wid]]
            wid = parent[wid]
        return wid

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    owner: dict[str, str] = {}
    for instruction in members:
        for path in instruction.deliverable_paths:
            union(instruction.worker_id, owner.setdefault(path, instruction.worker_id))
        for dep in instruction.dependencies:
            if dep in ids:
                union(instruction.worker_id, dep)
    groups: dict[str, list[WorkerInstruction]] = defaultdict(list)
    for instruction in members:
        groups[find(instruction.worker_id)].append(instruction)
    lanes = [_topological(group, ids) for group in groups.values()]
    return sorted(lanes, key=lambda lane: lane[0])


def _topological(group: list[WorkerInstruction], ids: set[str]) -> list[str]:
    """Kahn's algorithm with the smallest ready worker id first (groups are cycle-free)."""
    members = {i.worker_id: i for i in group}
    waiting = {wid: {d for d in i.dependencies if d in members} for wid, i in members.items()}
    dependents: dict[str, list[str]] = defaultdict(list)
    for wid, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(wid)
    ready = [wid for wid, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        wid = heapq.heappop(ready)
        order.append(wid)
        for child in dependents[wid]:
            waiting[child].discard(wid)
            if not waiting[child]:
                heapq.heappush(ready, child)
    return order
