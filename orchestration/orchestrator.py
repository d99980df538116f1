"""`MassiveOrchestrator`: runs a `WavePlan` wave by wave and keeps the run consistent.

Per wave a `WaveTeam` runs the lanes concurrently (up to `max_concurrency` workers at once).
Per worker it consults the state store first, so the same code serves a fresh run and a
`--resume`: passed workers are never run again, a worker whose lease expired mid-merge is
rolled forward, and one that died mid-attempt starts over from a clean work dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agents.worker import WorkerContext
from orchestration.config import WorkforceConfig
from orchestration.instruction import WorkerInstruction
from orchestration.planner import Wave, WavePlan
from orchestration.progress import ProgressView
from orchestration.protocols import KnowledgeStore, RetrospectiveStore, StateStore
from orchestration.records import FINAL_STATUSES, KnowledgeRecord, Retrospective, WorkerState
from orchestration.results import WorkerResult
from orchestration.runner import NotStarted, RunControl, WorkerRunner
from orchestration.wave_team import LaneDone, RunLane, WaveTeam

log = logging.getLogger("workforce")


def task_text(instruction: WorkerInstruction) -> str:
    """What a worker is asked to do, as searchable prose."""
    return "\n".join([instruction.title, *instruction.deliverables, *instruction.success_criteria])


class MassiveOrchestrator:
    def __init__(
        self,
        *,
        config: WorkforceConfig,
        plan: WavePlan,
        runner: WorkerRunner,
        state: StateStore,
        target: Path,
        blocked: set[str] | None = None,
        knowledge: KnowledgeStore | None = None,
        retrospectives: RetrospectiveStore | None = None,
        progress: ProgressView | None = None,
        known: dict[str, WorkerState] | None = None,
    ) -> None:
        self.config = config
        self.plan = plan
        self.runner = runner
        self.state = state
        self.target = target
        self.blocked = blocked or set()
        self.knowledge = knowledge
        self.retrospectives = retrospectives
        self.progress = progress or ProgressView(enabled=False)
        self.known = {w: s for w, s in (known or {}).items() if s.status in FINAL_STATUSES}
        """Workers already final when the run (re)started: accounted for without a round trip."""
        self.results: dict[str, WorkerResult] = {}
        self.summaries: dict[str, str] = {}
        self._earlier_cost = 0.0
        self._earlier_tokens = 0
        self._semaphore = asyncio.Semaphore(max(1, config.execution.max_concurrency))
        self._started = time.monotonic()

    @property
    def run_id(self) -> str:
        return self.runner.run_id

    @property
    def control(self) -> RunControl:
        return self.runner.control

    # -- waves -------------------------------------------------------------------------------
    async def execute(self) -> dict[str, Any]:
        """Every wave in ascending priority; stops starting workers once the run must abort."""
        self.progress.start(len(self.plan.workers), self._already_final())
        try:
            for wave in self.plan.waves:
                if self.control.abort_reason:
                    break
                await self.launch_priority_wave(wave)
        finally:
            self.progress.stop()
        return self.summary()

    async def launch_priority_wave(self, wave: Wave) -> list[LaneDone]:
        self.control.on_event({"event": "wave_started", "priority": wave.priority, "workers": len(wave.workers)})
        done = await self.execute_wave(wave)
        self.control.on_event({"event": "wave_finished", "priority": wave.priority})
        return done

    async def execute_wave(self, wave: Wave) -> list[LaneDone]:
        return await WaveTeam(self._run_lane).run(wave)

    async def _run_lane(self, message: RunLane) -> LaneDone:
        done = LaneDone(lane=message.lane)
        predecessor = ""
        for wid in message.workers:
            if self.control.abort_reason:
                break
            result = await self._run_worker(wid, message.wave, predecessor)
            if result is None:
                break
            done.statuses[wid] = result.status
            predecessor = self._summary(wid) if result.status == "passed" else ""
        return done

    # -- one worker ---------------------------------------------------------------------------
    async def _run_worker(self, wid: str, wave: int, predecessor: str) -> WorkerResult | None:
        """Run (or account for) one worker; None if it was never started (it stays pending)."""
        instruction = self.plan.instructions[wid]
        if wid in self.known:
            return self._from_state(self.known[wid], wave)
        known = await asyncio.to_thread(self._final_result, wid, wave)
        if known is not None:
            return known
        async with self._semaphore:
            if self.control.abort_reason or self.control.budget_spent:
                self._check_abort()
                return None
            if not await self._claim(wid):
                return await asyncio.to_thread(self._final_result, wid, wave) or self._lost(wid, wave)
            stored = await asyncio.to_thread(self.state.worker, self.run_id, wid)
            rolled = await asyncio.to_thread(self._roll_forward, instruction, stored, wave) if stored else None
            if rolled is not None:
                return self._finished(rolled)
            self.progress.running(wid)
            problem = await asyncio.to_thread(self._dependency_problem, instruction)
            if problem:
                result = await self.runner.skip(instruction, wave, problem)
            else:
                context = await self._context(instruction, predecessor)
                try:
                    result = await self.runner.run(instruction, wave, context)
                except NotStarted as exc:
                    self._abort(f"{exc} (${self.control.spent_usd:.4f})")
                    return None
        await self._learn(instruction, result)
        return self._finished(result)

    def _finished(self, result: WorkerResult) -> WorkerResult:
        self.results[result.worker_id] = result
        if result.status == "passed" and result.attempts:
            self.summaries[result.worker_id] = result.attempts[-1].summary
        self.progress.finished(result.worker_id, result.status)
        self._check_abort()
        return result

    def _from_state(self, stored: WorkerState, wave: int) -> WorkerResult:
        """A worker final before this launcher started; its result file is read only if needed."""
        result = WorkerResult(
            worker_id=stored.worker_id, run_id=self.run_id, wave=wave, status=stored.status,  # type: ignore[arg-type]
            deliverables_created=stored.files, reason=stored.error,
        )
        self.results[stored.worker_id] = result
        self._earlier_cost += stored.cost_usd
        self._earlier_tokens += stored.tokens
        return result

    def _summary(self, wid: str) -> str:
        """The lane successor's view of a passed worker (from its result file if it ran earlier)."""
        if wid not in self.summaries:
            earlier = self.runner.results.read_worker(wid)
            self.summaries[wid] = earlier.attempts[-1].summary if earlier and earlier.attempts else ""
        return self.summaries[wid]

    def _final_result(self, wid: str, wave: int) -> WorkerResult | None:
        """A worker already final in the state store (an earlier session, or another launcher)."""
        stored = self.state.worker(self.run_id, wid)
        if stored is None or stored.status not in FINAL_STATUSES:
            return None
        result = self.runner.results.read_worker(wid) or WorkerResult(
            worker_id=wid, run_id=self.run_id, wave=wave, status=stored.status,  # type: ignore[arg-type]
            deliverables_created=stored.files, reason=stored.error,
        )
        self.results[wid] = result
        if result.status == "passed" and result.attempts:
            self.summaries[wid] = result.attempts[-1].summary
        return result

    def _lost(self, wid: str, wave: int) -> WorkerResult:
        return WorkerResult(worker_id=wid, run_id=self.run_id, wave=wave, status="failed",
                            reason="the run was stopped while another launcher held this worker")

    async def _claim(self, wid: str) -> bool:
        """Take the worker's lease; while another live launcher holds it, wait for the outcome."""
        while not self.control.abort_reason:
            if await asyncio.to_thread(self.state.claim, self.run_id, wid, self.runner.owner):
                return True
            stored = await asyncio.to_thread(self.state.worker, self.run_id, wid)
            if stored is not None and stored.status in FINAL_STATUSES:
                return False
            await asyncio.sleep(max(0.05, self.runner.lease_s / 3))
        return False

    def _roll_forward(self, instruction: WorkerInstruction, stored: WorkerState, wave: int) -> WorkerResult | None:
        """Finish a merge that a crash interrupted, without running the worker again."""
        if not stored.integration or not stored.pending_result:
            return None
        workdir = self.runner.build_dir / self.run_id / instruction.worker_id
        copied = []
        for path, digest in stored.integration.items():
            if _sha256(self.target / path) == digest:
                continue
            if _sha256(workdir / path) != digest:
                return None
            (self.target / path).parent.mkdir(parents=True, exist_ok=True)
            (self.target / path).write_bytes((workdir / path).read_bytes())
            copied.append(path)
        result = WorkerResult.model_validate(json.loads(stored.pending_result))
        self.runner.results.write_worker(result)
        self.state.finish(self.run_id, instruction.worker_id, self.runner.owner, "passed",
                          files=sorted(stored.integration), finished_at=time.time())
        if copied or not self._integrated_before(instruction.worker_id):
            self.control.on_event({"event": "rolled_forward", "worker_id": instruction.worker_id, "files": copied})
        return result

    def _integrated_before(self, wid: str) -> bool:
        """Did the crashed launcher record this worker's merge before it died?"""
        return any(e.get("event") == "integrated" and e.get("worker_id") == wid
                   for e in self.state.events(self.run_id, 10_000))

    def _dependency_paths(self, instruction: WorkerInstruction) -> list[str]:
        """Deliverables of the worker's dependencies, transitively (what it builds on)."""
        paths: list[str] = []
        queue, seen = list(instruction.dependencies), set()
        while queue:
            dep = queue.pop()
            if dep in seen or dep not in self.plan.instructions:
                continue
            seen.add(dep)
            paths.extend(self.plan.instructions[dep].deliverable_paths)
            queue.extend(self.plan.instructions[dep].dependencies)
        return sorted(set(paths))

    def _dependency_problem(self, instruction: WorkerInstruction) -> str:
        for dep in instruction.dependencies:
            if dep in self.blocked:
                return f"dependency {dep} has errors and was not planned"
            if dep not in self.plan.instructions:
                continue
            stored = self.state.worker(self.run_id, dep)
            if stored is None or stored.status != "passed":
                status = stored.status if stored else "not run"
                return f"dependency {dep} did not pass ({status})"
        return ""

    # -- knowledge ----------------------------------------------------------------------------
    async def _context(self, instruction: WorkerInstruction, predecessor: str) -> WorkerContext:
        context = WorkerContext(predecessor_summary=predecessor, seed_paths=self._dependency_paths(instruction))
        query = task_text(instruction)
        if self.knowledge is not None:
            context.similar_work = await asyncio.to_thread(
                self.knowledge.prompt_context, query, None, None, instruction.worker_id
            )
        if self.retrospectives is not None:
            context.lessons = await asyncio.to_thread(self.retrospectives.lessons_for, query)
        return context

    async def _learn(self, instruction: WorkerInstruction, result: WorkerResult) -> None:
        """Index the result for later workers and store the retrospective."""
        if result.status == "skipped":
            return
        last = result.attempts[-1] if result.attempts else None
        failures = [a.error for a in result.attempts if a.outcome != "passed" and a.error]
        if self.knowledge is not None:
            files = {p: _read(self.target / p) for p in result.deliverables_created}
            record = KnowledgeRecord(
                run_id=self.run_id, worker_id=result.worker_id, title=instruction.title, status=result.status,
                task=task_text(instruction), summary=last.summary if last else "", files=files,
                tests=last.tests if last else [], failure_reasons=failures,
            )
            await asyncio.to_thread(self.knowledge.record, record)
        if self.retrospectives is not None:
            await asyncio.to_thread(self.retrospectives.add, self._retrospective(instruction, result))

    def _retrospective(self, instruction: WorkerInstruction, result: WorkerResult) -> Retrospective:
        last = result.attempts[-1] if result.attempts else None
        tests = last.tests if last else []
        return Retrospective(
            run_id=self.run_id, worker_id=result.worker_id, name=instruction.title, status=result.status,
            provider=last.provider if last else "", duration_s=result.duration_s,
            tests_passed=sum(t.passed for t in tests), tests_total=len(tests), files=result.deliverables_created,
            errors=[a.error.splitlines()[0][:300] for a in result.attempts if a.error],
            instruction_retrospective=instruction.retrospective[:2000], lessons=lessons(result),
            timestamp=time.time(),
        )

    # -- run health ---------------------------------------------------------------------------
    def _check_abort(self) -> None:
        if self.control.abort_reason:
            return
        if self.control.budget_spent:
            self._abort(f"budget of ${self.control.budget_usd:.2f} spent (${self.control.spent_usd:.4f})")
            return
        finished = [r for r in self.results.values() if r.status in ("passed", "failed", "escalated")]
        execution = self.config.execution
        if len(finished) < execution.abort_min_finished:
            return
        outcomes: Counter[str] = Counter(r.attempts[-1].outcome for r in finished if r.status != "passed" and r.attempts)
        for outcome, limit, label in (
            ("guide_detected", execution.abort_guide_rate, "guides"),
            ("tests_failed", execution.abort_test_failure_rate, "test failures"),
            ("timeout", execution.abort_timeout_rate, "timeouts"),
        ):
            rate = outcomes[outcome] / len(finished)
            if rate > limit:
                self._abort(f"{label} at {rate:.0%} of {len(finished)} finished workers exceed {limit:.0%}")
                return

    def _abort(self, reason: str) -> None:
        self.control.abort_reason = reason
        log.error("aborting run %s: %s", self.run_id, reason)
        self.control.on_event({"event": "abort", "reason": reason})

    def _already_final(self) -> int:
        return sum(1 for w in self.plan.workers if w in self.known)

    def monitor_progress(self) -> dict[str, int]:
        counts: Counter[str] = Counter(s.status for s in self.state.workers(self.run_id).values())
        return dict(counts)

    def summary(self) -> dict[str, Any]:
        statuses = {wid: (self.results[wid].status if wid in self.results else "pending") for wid in self.plan.workers}
        counts = Counter(statuses.values())
        attempted = counts["passed"] + counts["failed"] + counts["escalated"]
        waves = []
        for wave in self.plan.waves:
            wave_counts = Counter(statuses[w] for w in wave.workers)
            waves.append({"priority": wave.priority, "total": len(wave.workers),
                          **{k: wave_counts[k] for k in ("passed", "failed", "escalated", "skipped", "pending")}})
        return {
            "run_id": self.run_id,
            "target": str(self.target),
            "status": "aborted" if self.control.abort_reason else "finished",
            "reason": self.control.abort_reason,
            "total": len(statuses),
            "passed": counts["passed"],
            "failed": counts["failed"],
            "escalated": counts["escalated"],
            "skipped": counts["skipped"],
            "pending": counts["pending"],
            "success_rate": round(counts["passed"] / attempted, 4) if attempted else 0.0,
            "cost_usd": round(self._earlier_cost + sum(r.cost_usd for r in self.results.values()), 6),
            "tokens": self._earlier_tokens + sum(r.tokens for r in self.results.values()),
            "duration_s": round(time.monotonic() - self._started, 3),
            "waves": waves,
        }


def lessons(result: WorkerResult) -> list[str]:
    """Short lessons from how the attempts went."""
    found = []
    for attempt in result.attempts:
        if attempt.outcome == "passed":
            if attempt.number > 1 or len(result.attempts) > 1:
                found.append(f"passed on attempt {attempt.number} ({attempt.provider}) after the failures were fed back")
            continue
        detail = attempt.error.splitlines()[1] if attempt.error.count("\n") else attempt.error
        found.append(f"attempt {attempt.number} on {attempt.provider}: {attempt.outcome}: {detail[:200]}")
    if result.status == "passed" and not found:
        found.append("passed on the first attempt")
    return found


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
