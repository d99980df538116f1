"""`WorkerRunner`: one worker from claim to result, with the seeds' delegated mitigation.

    attempt on the routed provider → tests fail / guide / timeout → retry with the failures fed
    back (≤ max_retries) → one attempt on the fallback provider → `escalated`

Each attempt starts from a fresh copy of the target tree; only a passing attempt is integrated.
The result file and the state are written in `finally`, so every exit path leaves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autogen_agentchat.messages import TextMessage
from autogen_core import CancellationToken

from agents.metered_client import MeteredClient
from agents.model_factory import ModelClientFactory
from agents.worker import WorkerContext, WorkforceWorker, task_message
from orchestration.config import ExecutionConfig
from orchestration.errors import WorkforceError
from orchestration.instruction import WorkerInstruction
from orchestration.integration import IntegrationManager
from orchestration.protocols import ResourceGate, StateStore
from orchestration.redaction import redact
from orchestration.results import AttemptResult, ResultsWriter, WorkerResult
from orchestration.validation import ValidationEngine, detect_guide
from orchestration.workdir import WorkDir

log = logging.getLogger("workforce")


class AttemptTimeout(Exception):
    """The attempt ran past its time limit or stalled."""


class NotStarted(Exception):
    """The budget was spent before the worker's first attempt: it stays pending for --resume."""


@dataclass
class RunControl:
    """Shared by every worker of a run: spending and the reason to stop, if any."""

    budget_usd: float | None = None
    spent_usd: float = 0.0
    abort_reason: str = ""
    on_event: Callable[[dict[str, Any]], None] = field(default=lambda event: None)

    @property
    def budget_spent(self) -> bool:
        return self.budget_usd is not None and self.spent_usd >= self.budget_usd


@dataclass
class WorkerRunner:
    """Runs workers of one run; holds the collaborators every attempt needs."""

    run_id: str
    owner: str
    execution: ExecutionConfig
    factory: ModelClientFactory
    validator: ValidationEngine
    integrator: IntegrationManager
    results: ResultsWriter
    state: StateStore
    gate: ResourceGate
    build_dir: Path
    control: RunControl
    lease_s: float = 30.0

    async def run(self, instruction: WorkerInstruction, wave: int, context: WorkerContext) -> WorkerResult:
        """Claim, attempt until passed or mitigation is exhausted, then record. Never raises
        for the worker's own failures."""
        wid = instruction.worker_id
        started = time.monotonic()
        result = WorkerResult(worker_id=wid, title=instruction.title, run_id=self.run_id, wave=wave, status="failed")
        await asyncio.to_thread(self.results.clear_worker, wid)
        heartbeat = asyncio.create_task(self._heartbeat(wid))
        started_work = True
        try:
            await self._attempts(instruction, context, result)
        except NotStarted:
            started_work = False
            await asyncio.to_thread(self.state.reset_worker, self.run_id, wid)
            raise
        except asyncio.CancelledError:
            started_work = False  # interrupted, not failed: its lease expires and --resume reruns it
            raise
        except Exception as exc:  # noqa: BLE001 - any launcher-side fault ends this worker, not the run
            result.status, result.reason = "failed", redact(f"launcher error: {exc}")
            log.exception("worker %s failed inside the launcher", wid)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            if started_work:
                result.duration_s = round(time.monotonic() - started, 3)
                result.timestamp = datetime.now(UTC).isoformat()
                await asyncio.to_thread(self._record, result)
        return result

    async def skip(self, instruction: WorkerInstruction, wave: int, reason: str) -> WorkerResult:
        result = WorkerResult(
            worker_id=instruction.worker_id, title=instruction.title, run_id=self.run_id, wave=wave,
            status="skipped", reason=reason, timestamp=datetime.now(UTC).isoformat(),
        )
        await asyncio.to_thread(self._record, result)
        return result

    def _record(self, result: WorkerResult) -> None:
        self.results.write_worker(result)
        last = result.attempts[-1] if result.attempts else None
        self.state.finish(
            self.run_id, result.worker_id, self.owner, result.status,
            provider=last.provider if last else "", model=last.model if last else "",
            tokens=result.tokens, cost_usd=round(result.cost_usd, 6), error=result.reason,
            files=result.deliverables_created, finished_at=time.time(),
        )
        self.control.on_event({"event": "worker_finished", "worker_id": result.worker_id,
                               "status": result.status, "reason": result.reason})

    async def _heartbeat(self, wid: str) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.lease_s / 3))
            if not await asyncio.to_thread(self.state.renew, self.run_id, wid, self.owner):
                log.warning("lease of %s was lost", wid)

    # -- attempts ------------------------------------------------------------------------------
    def _providers(self, instruction: WorkerInstruction) -> tuple[list[str], bool]:
        primary = self.factory.route(instruction)
        sequence = [primary] * (1 + self.execution.max_retries)
        fallback = self.factory.fallback(primary)
        if fallback:
            sequence.append(fallback)
        return sequence, fallback is not None

    async def _attempts(self, instruction: WorkerInstruction, context: WorkerContext, result: WorkerResult) -> None:
        sequence, has_fallback = self._providers(instruction)
        previous = await asyncio.to_thread(self.state.worker, self.run_id, instruction.worker_id)
        first_number = (previous.attempt if previous else 0) + 1
        feedback = ""
        workdir = WorkDir(self.build_dir / self.run_id / instruction.worker_id)
        workdir.on_write = lambda path: self.integrator.top_up(workdir, [path])
        for index, provider in enumerate(sequence):
            if self.control.budget_spent:
                if index == 0:
                    raise NotStarted(f"budget of ${self.control.budget_usd:.2f} spent")
                result.reason = f"budget of ${self.control.budget_usd:.2f} spent before attempt {index + 1}"
                return
            await self.gate.wait_until_can_spawn()
            number = first_number + index
            await asyncio.to_thread(
                self.state.update_worker, self.run_id, instruction.worker_id, attempt=number, provider=provider
            )
            attempt = await self._attempt(instruction, context, workdir, provider, number, feedback)
            result.attempts.append(attempt)
            self.control.spent_usd += attempt.cost_usd
            if attempt.outcome == "passed":
                await asyncio.to_thread(self._integrate, instruction, workdir, result)
                return
            feedback = attempt.error
        result.status = "escalated" if has_fallback else "failed"
        result.reason = f"no attempt passed ({', '.join(a.outcome for a in result.attempts)})"

    def _integrate(self, instruction: WorkerInstruction, workdir: WorkDir, result: WorkerResult) -> None:
        """Record what will be merged (so a crash mid-merge rolls forward), then merge."""
        changed, ignored = self.integrator.changed_files(instruction, workdir)
        result.status, result.reason = "passed", ""
        result.deliverables_created, result.ignored_files = sorted(changed), ignored
        manifest = {path: hashlib.sha256((workdir.root / path).read_bytes()).hexdigest() for path in changed}
        pending = result.model_copy(update={"timestamp": datetime.now(UTC).isoformat()})
        self.state.update_worker(
            self.run_id, instruction.worker_id, integration=manifest, pending_result=pending.model_dump_json()
        )
        self.integrator.integrate(instruction, workdir, sorted(changed))
        self.control.on_event({"event": "integrated", "worker_id": instruction.worker_id, "files": sorted(changed)})

    async def _attempt(
        self, instruction: WorkerInstruction, context: WorkerContext, workdir: WorkDir,
        provider: str, number: int, feedback: str,
    ) -> AttemptResult:
        started = time.monotonic()
        await asyncio.to_thread(self.integrator.seed, workdir, instruction, context.seed_paths)
        attempt = AttemptResult(number=number, provider=provider, model="", outcome="provider_error")
        client: MeteredClient | None = None
        try:
            client = self.factory.create(provider, instruction.worker_id, number)
            attempt.model = client.model
            summary = await self._converse(instruction, context, workdir, client, feedback)
            attempt.summary = redact(summary)[:2000]
            await self._judge(instruction, workdir, summary, attempt)
        except AttemptTimeout as exc:
            attempt.outcome, attempt.error = "timeout", str(exc)
        except (WorkforceError, Exception) as exc:  # noqa: BLE001 - provider and tool faults are data
            attempt.outcome, attempt.error = "provider_error", redact(f"{type(exc).__name__}: {exc}")[:2000]
        finally:
            if client is not None:
                attempt.tokens, attempt.cost_usd = client.usage.tokens, round(client.usage.cost_usd, 6)
                await client.close()
            attempt.duration_s = round(time.monotonic() - started, 3)
        self.control.on_event({"event": "attempt", "worker_id": instruction.worker_id, "number": number,
                               "provider": provider, "outcome": attempt.outcome})
        return attempt

    async def _judge(self, instruction: WorkerInstruction, workdir: WorkDir, summary: str, attempt: AttemptResult) -> None:
        files, _ = await asyncio.to_thread(self.integrator.changed_files, instruction, workdir)
        await asyncio.to_thread(self.integrator.top_up, workdir, sorted(files))
        guide = detect_guide(files, summary)
        if guide:
            attempt.outcome = "guide_detected"
            attempt.error = f"Guide detected: {guide}. Write the actual implementation into the files."
            return
        if not instruction.test_commands:
            attempt.outcome, attempt.error = "tests_failed", "TEST_PROCESS has no commands; nothing proves the work"
            return
        attempt.tests = await self.validator.run_tests(instruction, workdir)
        if all(t.passed for t in attempt.tests):
            attempt.outcome = "passed"
        else:
            attempt.outcome = "tests_failed"
            attempt.error = "These test commands failed:\n" + self.validator.feedback(attempt.tests)

    async def _converse(
        self, instruction: WorkerInstruction, context: WorkerContext, workdir: WorkDir,
        client: MeteredClient, feedback: str,
    ) -> str:
        agent = WorkforceWorker(
            instruction, client, workdir,
            command_timeout_s=self.execution.command_timeout_s,
            max_tool_rounds=self.execution.max_tool_rounds,
            context=context,
        )
        token = CancellationToken()
        conversation = asyncio.create_task(agent.run(task=task_message(instruction, feedback), cancellation_token=token))
        limit = instruction.time_limit_s or self.execution.worker_timeout_s
        await self._watch(conversation, token, client, workdir, limit)
        messages = conversation.result().messages
        texts = [m.content for m in messages if isinstance(m, TextMessage) and m.source == instruction.worker_id]
        return texts[-1] if texts else ""

    async def _watch(
        self, conversation: asyncio.Task, token: CancellationToken, client: MeteredClient,
        workdir: WorkDir, limit_s: float,
    ) -> None:
        """Wait for the conversation; cancel it past the time limit or when it stalls."""
        deadline = time.monotonic() + limit_s
        while not conversation.done():
            await asyncio.wait({conversation}, timeout=min(1.0, limit_s))
            now = time.monotonic()
            idle = now - max(client.last_activity, workdir.last_activity)
            reason = ""
            if now >= deadline:
                reason = f"time limit of {limit_s:g}s reached"
            elif idle >= self.execution.stall_timeout_s:
                reason = f"stalled: no model or tool activity for {idle:.0f}s"
            if reason and not conversation.done():
                token.cancel()
                conversation.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await conversation
                raise AttemptTimeout(reason)
        conversation.result()
