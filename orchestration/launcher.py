"""`Launcher`: one run, fresh or resumed, from instruction files to the execution summary.

It loads and plans, checks credentials before any wave, creates (or re-opens and checks) the
run in the state store, starts the ResourceMonitor, runs the orchestrator and writes
`execution_summary.json`; stores are injected, so tests and benchmarks choose their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from agents.model_factory import ModelClientFactory
from orchestration.config import WorkforceConfig
from orchestration.errors import StateError, WorkforceError
from orchestration.instruction import Diagnostic
from orchestration.integration import IntegrationManager
from orchestration.loader import LoadResult, load_workers
from orchestration.monitor import Reading, ResourceMonitor, psutil_sampler
from orchestration.orchestrator import MassiveOrchestrator
from orchestration.planner import WavePlan, plan
from orchestration.progress import ProgressView
from orchestration.protocols import KnowledgeStore, RetrospectiveStore, StateStore
from orchestration.records import FINAL_STATUSES, RunRecord, WorkerState
from orchestration.redaction import redact
from orchestration.results import ResultsWriter
from orchestration.runner import RunControl, WorkerRunner
from orchestration.validation import ValidationEngine

log = logging.getLogger("workforce")


@dataclass
class LaunchOptions:
    workers_dir: Path
    target: Path
    priority: int | None = None
    provider: str | None = None
    budget_usd: float | None = None
    max_concurrency: int | None = None
    run_id: str | None = None
    resume: bool = False
    replan: bool = False


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Launcher:
    def __init__(
        self,
        config: WorkforceConfig,
        base_dir: Path,
        options: LaunchOptions,
        *,
        state: StateStore,
        knowledge: KnowledgeStore | None = None,
        retrospectives: RetrospectiveStore | None = None,
        console: Console | None = None,
        sampler: Any = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.options = options
        self.state = state
        self.knowledge = knowledge
        self.retrospectives = retrospectives
        self.console = console or Console()
        self.sampler = sampler
        self.diagnostics: list[Diagnostic] = []
        if options.max_concurrency:
            config.execution.max_concurrency = options.max_concurrency
        if options.budget_usd is not None:
            config.execution.budget_usd = options.budget_usd

    def path(self, value: str | Path) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    async def run(self) -> dict[str, Any]:
        record = self._resume_record() if self.options.resume else None
        loaded, the_plan = self._plan(record)
        run_id = record.run_id if record else (self.options.run_id or new_run_id())
        target = Path(record.target) if record else self.options.target.resolve()
        control = RunControl(budget_usd=self.config.execution.budget_usd,
                             on_event=lambda event: self._event(run_id, event))
        provider = self.options.provider or (record.provider if record else "") or None
        factory = ModelClientFactory(self.config, self.base_dir, override=provider, on_event=control.on_event)
        known: dict[str, WorkerState] = {}
        if record is None:
            factory.check_credentials(the_plan.instructions.values())
            self._create_run(run_id, target, the_plan)
        else:
            self._reconcile(record, the_plan)
            known = self.state.workers(run_id)
            factory.check_credentials(
                the_plan.instructions[w] for w in the_plan.workers
                if w not in known or known[w].status not in FINAL_STATUSES
            )
        return await self._execute(run_id, target, loaded, the_plan, factory, control, known)

    async def _execute(
        self, run_id: str, target: Path, loaded: LoadResult, the_plan: WavePlan,
        factory: ModelClientFactory, control: RunControl, known: dict[str, WorkerState],
    ) -> dict[str, Any]:
        workers_at_once = self.config.execution.max_concurrency
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=max(8, 2 * workers_at_once), thread_name_prefix="workforce-io")
        )
        await self._prepare_knowledge(the_plan)
        monitor = self._monitor(target)
        monitor.start()
        results = ResultsWriter(self.path(self.config.results_dir))
        await asyncio.to_thread(results.start_run, run_id)
        runner = WorkerRunner(
            run_id=run_id, owner=owner_id(), execution=self.config.execution, factory=factory,
            validator=ValidationEngine(self.config.execution.command_timeout_s),
            integrator=IntegrationManager(target, self.config.execution.seed), results=results,
            state=self.state, gate=monitor,
            build_dir=self.path(self.config.build_dir), control=control, lease_s=self.config.state.lease_s,
        )
        orchestrator = MassiveOrchestrator(
            config=self.config, plan=the_plan, runner=runner, state=self.state, target=target,
            blocked={i.worker_id for i in loaded.instructions} - set(the_plan.instructions),
            knowledge=self.knowledge, retrospectives=self.retrospectives,
            progress=ProgressView(self.console), known=known,
        )
        self.state.update_run(run_id, status="running", reason="")
        try:
            summary = await orchestrator.execute()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.state.update_run(run_id, status="stopped", reason="interrupted")
            raise
        finally:
            monitor.stop()
            await factory.close()
            if self.knowledge is not None:
                await asyncio.to_thread(self.knowledge.flush)
        results.write_summary(summary)
        self.state.update_run(run_id, status=summary["status"], reason=summary["reason"])
        return summary

    def _monitor(self, target: Path) -> ResourceMonitor:
        target.mkdir(parents=True, exist_ok=True)
        sampler = self.sampler or psutil_sampler(target)
        return ResourceMonitor(self.config.monitor, sampler, self.path(self.config.logs_dir) / "resources.log")

    # -- planning and the stored run -------------------------------------------------------------
    def _plan(self, record: RunRecord | None) -> tuple[LoadResult, WavePlan]:
        workers_dir = Path(record.workers_dir) if record else self.options.workers_dir
        priority = record.priority if record else self.options.priority
        loaded = load_workers(workers_dir, self.config.planning)
        the_plan = plan(loaded, priority=priority)
        self.diagnostics = sorted(loaded.diagnostics + the_plan.diagnostics, key=lambda d: (d.file, d.line))
        return loaded, the_plan

    def _create_run(self, run_id: str, target: Path, the_plan: WavePlan) -> None:
        if self.state.get_run(run_id) is not None:
            raise StateError(f"run {run_id} already exists; resume it with --resume {run_id}")
        record = RunRecord(
            run_id=run_id, created_at=time.time(), target=str(target),
            workers_dir=str(self.options.workers_dir.resolve()), priority=self.options.priority,
            provider=self.options.provider or "",
            waves=_waves(the_plan), fingerprint=the_plan.fingerprint(), plan_digest=the_plan.digest(),
        )
        self.state.create_run(record, the_plan.workers)
        for wave in the_plan.waves:
            for wid in wave.workers:
                self.state.update_worker(run_id, wid, wave=wave.priority)

    def _resume_record(self) -> RunRecord:
        run_id = self.options.run_id or self.state.latest_run_id()
        if run_id is None:
            raise StateError("there is no run to resume")
        record = self.state.get_run(run_id)
        if record is None:
            raise StateError(f"run {run_id} is not in the state store")
        return record

    def _reconcile(self, record: RunRecord, the_plan: WavePlan) -> None:
        """Compare the re-derived plan with the stored one; `--replan` accepts the differences."""
        new = the_plan.fingerprint()
        changed = sorted(w for w in new if w in record.fingerprint and new[w] != record.fingerprint[w])
        added = sorted(set(new) - set(record.fingerprint))
        removed = sorted(set(record.fingerprint) - set(new))
        if not (changed or added or removed):
            return
        if not self.options.replan:
            parts = [f"{label}: {', '.join(ids)}" for label, ids in
                     (("changed", changed), ("added", added), ("removed", removed)) if ids]
            raise StateError(
                f"the instructions differ from the plan stored for run {record.run_id} ({'; '.join(parts)}); "
                "resume with --replan to accept them (changed and added workers run again)",
            )
        for wid in changed + added:
            self.state.reset_worker(record.run_id, wid)
        self.state.update_run(record.run_id, waves=_waves(the_plan), fingerprint=new, plan_digest=the_plan.digest())
        self._event(record.run_id, {"event": "replanned", "changed": changed, "added": added, "removed": removed})

    async def _prepare_knowledge(self, the_plan: WavePlan) -> None:
        if self.knowledge is not None:
            await asyncio.to_thread(self.knowledge.index_instructions, list(the_plan.instructions.values()))
        if self.retrospectives is not None:
            await asyncio.to_thread(self.retrospectives.replay_pending)

    def _event(self, run_id: str, event: dict[str, Any]) -> None:
        """Log and store an event; from the event loop the store write goes to a thread (a
        journalled store fsyncs every write), from a worker thread it is written in place."""
        log.info("%s %s", run_id, redact(str(event)))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._store_event(run_id, event)
            return
        loop.run_in_executor(None, self._store_event, run_id, event)

    def _store_event(self, run_id: str, event: dict[str, Any]) -> None:
        try:
            self.state.append_event(run_id, event)
        except WorkforceError as exc:
            log.warning("event not stored: %s", exc)


def _waves(the_plan: WavePlan) -> list[dict]:
    return [{"priority": w.priority, "lanes": [lane.workers for lane in w.lanes]} for w in the_plan.waves]


def fixed_sampler(reading: Reading | None = None) -> Any:
    """A sampler that always reports the same reading (tests, benchmarks)."""
    value = reading or Reading(0.0, 0.0, 0.0)
    return lambda: value
