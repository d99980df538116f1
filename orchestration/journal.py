"""Degraded mode: an fsync'd journal of every state mutation, and a StateStore that survives Redis.

`Journal` appends one JSON line per mutation (create_run, claim, update_worker, finish, skip,
reset_worker, update_run, event) to `state.journal_path`, each flushed and fsync'd, under an
flock so several launchers can share the file. Every entry carries a file-wide `seq`, a wall
clock `ts`, the `writer` (one per Journal object) and, for worker mutations, the full
WorkerState after it (`state`); `create_run` and `update_run` carry the full RunRecord (`run`).
Two markers frame an outage: `degraded` (Redis went away) and `resynced` (its entries are in
Redis again, `upto` the last replayed seq of `for_writer`).

`ResilientStateStore` sends every call to Redis and keeps an in-memory mirror of each run it
touches (loaded at create_run or first access, kept current by its own mutations and reads).
When Redis raises StateUnavailable it logs one warning, writes a `degraded` marker and carries
on with the mirror plus the journal. While degraded, each call first tries to reconnect (at
most once per `reconnect_interval_s`); once Redis answers, the entries written since the marker
are replayed through the idempotent `merge_*` writes of RedisStateStore (a final status wins
over running/pending, `passed` never regresses, events are de-duplicated) and the store is
normal again. A launcher that dies while degraded leaves an unclosed window, which the next
ResilientStateStore replays at start-up. If Redis is unreachable at start-up the mirror is
rebuilt with `load_from_journal`, so `--resume` works without Redis.

While degraded, claims are exclusive only within this launcher: another launcher cannot see
them, so two launchers that both lose Redis may run the same worker. Leases are then local
deadlines (a worker another launcher was running counts as leased for `lease_s` after this
launcher last saw it). Events are at-least-once: the one in flight when Redis dropped may be
stored twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from orchestration.config import StateConfig
from orchestration.errors import StateError
from orchestration.records import FINAL_STATUSES, RunRecord, WorkerState
from orchestration.redis_server import PrivateRedis, connect, make_client, socket_path_for
from orchestration.state import (
    PROTECTED_RUN_FIELDS,
    PROTECTED_WORKER_FIELDS,
    STATUSES,
    RedisStateStore,
    RunSummary,
    StateUnavailable,
    check_fields,
    encode_event,
    merge_allowed,
    redact_value,
    summarise,
    wave_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
WORKER_OPS = frozenset({"claim", "update_worker", "finish", "skip", "reset_worker"})
MARKERS = frozenset({"degraded", "resynced"})
TAIL_BYTES = 1 << 20
MIRRORED_EVENTS = 1000


# --------------------------------------------------------------------------- the file


class Journal:
    """Append-only JSON-lines file; every append is flushed and fsync'd before it returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.writer = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the state journal: {exc.strerror}", path=self.path) from exc
        self._lock = threading.Lock()
        self._seq = 0
        self._size = -1
        """File size after our last append; another size means another writer appended."""

    def append(self, op: str, run_id: str | None = None, **data: Any) -> dict[str, Any]:
        """Write one entry (seq, ts, op, run_id, writer, **data) durably; returns it."""
        with self._lock:
            if self._fd is None:
                raise StateError("the state journal is closed", path=self.path)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return self._append_locked(self._fd, op, run_id, data)
            except OSError as exc:
                raise StateError(f"cannot write the state journal: {exc.strerror}", path=self.path) from exc
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def entries(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every readable entry in file order (of one run when `run_id` is given)."""
        return read_journal(self.path, run_id)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _append_locked(self, fd: int, op: str, run_id: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
        size = os.fstat(fd).st_size
        prefix = b""
        if size != self._size:
            self._seq, complete = _tail_seq(self.path, size)
            prefix = b"" if complete else b"\n"  # end a line a crash cut short
        entry = {"seq": self._seq + 1, "ts": time.time(), "op": op, "run_id": run_id, "writer": self.writer, **data}
        try:
            line = prefix + json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            raise StateError(f"journal entry {op} is not JSON-serialisable: {exc}", path=self.path) from exc
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        self._seq, self._size = entry["seq"], size + len(line)
        return entry


def _tail_seq(path: Path, size: int) -> tuple[int, bool]:
    """(last seq in the file, whether it ends with a newline), reading only its tail if it can."""
    if size == 0:
        return 0, True
    with open(path, "rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
    complete = tail.endswith(b"\n")
    for raw in reversed(tail.splitlines()):
        entry = _parse(raw)
        if entry is not None:
            return int(entry["seq"]), complete
    last = 0
    for entry in read_journal(path):
        last = max(last, int(entry["seq"]))
    return last, complete


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and isinstance(entry.get("op"), str):
        return entry
    return None


def read_journal(path: str | Path, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Entries of the journal at `path` in file order; damaged lines are skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            entry = _parse(raw)
            if entry is None:
                log.warning("%s:%d: skipping a damaged journal line", path, number)
                continue
            if run_id is None or entry.get("run_id") == run_id:
                yield entry


# --------------------------------------------------------------------------- rebuilding


@dataclass
class JournalRun:
    """A run as the journal alone tells it."""

    run: RunRecord
    workers: dict[str, WorkerState]
    events: list[dict[str, Any]] = field(default_factory=list)


def rebuild_run(entries: Iterable[Mapping[str, Any]], run_id: str, path: str | Path = "") -> JournalRun | None:
    """Fold a run's entries (file order, the replay rules of `merge_allowed`); None if absent."""
    run: RunRecord | None = None
    workers: dict[str, WorkerState] = {}
    events: list[dict[str, Any]] = []
    for entry in entries:
        if entry.get("run_id") != run_id:
            continue
        try:
            run = _fold(entry, run, workers, events)
        except (ValidationError, KeyError, TypeError) as exc:
            raise StateError(f"journal entry seq {entry.get('seq')} ({entry.get('op')}) is invalid: {exc}",
                             path=path or None) from exc
    return JournalRun(run, workers, events) if run is not None else None


def _fold(
    entry: Mapping[str, Any], run: RunRecord | None, workers: dict[str, WorkerState], events: list[dict[str, Any]]
) -> RunRecord | None:
    """Apply one entry to the run being rebuilt; returns the (possibly new) run record."""
    op = entry["op"]
    if op in ("create_run", "update_run"):
        run = RunRecord.model_validate(entry["run"])
        waves = wave_of(run)
        for worker_id in entry.get("workers", []):
            workers.setdefault(worker_id, WorkerState(worker_id=worker_id, wave=waves.get(worker_id, 0)))
    elif op in WORKER_OPS:
        state = WorkerState.model_validate(entry["state"])
        current = workers.get(state.worker_id)
        if merge_allowed(current.status if current else None, state.status, reset=op == "reset_worker"):
            workers[state.worker_id] = state
    elif op == "event":
        events.append(dict(entry["event"]))
    return run


def load_from_journal(path: str | Path, run_id: str) -> tuple[RunRecord, dict[str, WorkerState]] | None:
    """The run and its worker states from the journal alone (no Redis); None if it is not there."""
    rebuilt = rebuild_run(read_journal(path, run_id), run_id, path)
    return (rebuilt.run, rebuilt.workers) if rebuilt else None


def journal_latest_run_id(path: str | Path) -> str | None:
    """The journalled run with the newest created_at."""
    newest: tuple[float, str] | None = None
    for entry in read_journal(path):
        if entry["op"] == "create_run" and isinstance(entry.get("run"), dict):
            candidate = (float(entry["run"].get("created_at", 0.0)), str(entry["run_id"]))
            newest = max(newest, candidate) if newest else candidate
    return newest[1] if newest else None


def unsynced_entries(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per writer, the entries of a degraded window no `resynced` marker closed yet."""
    open_windows: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        writer, op = str(entry.get("writer")), entry["op"]
        if op == "degraded":
            open_windows.setdefault(writer, [])
        elif op == "resynced":
            target, upto = str(entry.get("for_writer")), int(entry.get("upto", 0))
            if target == writer:
                open_windows.pop(target, None)
            elif target in open_windows:
                open_windows[target] = [e for e in open_windows[target] if e["seq"] > upto]
        elif writer in open_windows:
            open_windows[writer].append(dict(entry))
    return {writer: found for writer, found in open_windows.items() if found}


# --------------------------------------------------------------------------- replay


def replay_entries(store: RedisStateStore, entries: Iterable[Mapping[str, Any]], journal_path: str | Path = "") -> int:
    """Write journalled mutations into Redis idempotently; returns how many changed something.

    A run Redis does not have at all is first restored from the whole journal. StateUnavailable
    propagates (replay again later); an entry Redis rejects is logged and skipped."""
    entries = list(entries)
    for run_id in dict.fromkeys(str(e["run_id"]) for e in entries if e.get("run_id")):
        if store.get_run(run_id) is None and journal_path:
            _restore_run(store, journal_path, run_id)
    applied = 0
    for entry in entries:
        try:
            applied += _replay_one(store, entry)
        except StateUnavailable:
            raise
        except (StateError, ValidationError, KeyError, TypeError) as exc:
            log.error("journal entry seq %s (%s) could not be replayed: %s", entry.get("seq"), entry.get("op"), exc)
    return applied


def _replay_one(store: RedisStateStore, entry: Mapping[str, Any]) -> int:
    op, run_id = entry["op"], entry.get("run_id")
    if op in MARKERS or not run_id:
        return 0
    if op == "create_run":
        run = RunRecord.model_validate(entry["run"])
        store.merge_run(run, entry.get("workers", []))
        return 1
    if op == "update_run":
        run = RunRecord.model_validate(entry["run"])
        store.merge_run(run, [])
        store.update_run(run_id, **entry.get("fields", {}))
        return 1
    if op in WORKER_OPS:
        state = WorkerState.model_validate(entry["state"])
        return int(store.merge_worker(run_id, state, reset=op == "reset_worker"))
    if op == "event":
        return int(store.merge_event(run_id, dict(entry["event"]), f"{entry['writer']}:{entry['seq']}"))
    log.warning("unknown journal op %r (seq %s) ignored", op, entry.get("seq"))
    return 0


def _restore_run(store: RedisStateStore, journal_path: str | Path, run_id: str) -> bool:
    """Put a run Redis lost (data dir wiped, another Redis) back from the journal."""
    restored = load_from_journal(journal_path, run_id)
    if restored is None:
        return False
    run, workers = restored
    log.warning("run %s is missing from Redis; restoring it from the journal %s", run_id, journal_path)
    store.merge_run(run, workers)
    for state in workers.values():
        store.merge_worker(run_id, state, reset=True)
    return True


# --------------------------------------------------------------------------- the mirror


Lease = Literal["set", "drop", "keep"]


@dataclass
class RunMirror:
    """One run held in memory, with the same transition rules as the Lua scripts.

    Leases are local monotonic deadlines. `propose_*` return the worker's next state (None when
    the transition is refused) without changing anything; `commit` applies it."""

    run: RunRecord
    workers: dict[str, WorkerState]
    lease_s: float
    deadlines: dict[str, float] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MIRRORED_EVENTS))

    def __post_init__(self) -> None:
        for worker_id, state in self.workers.items():
            if state.status == "running":
                self.deadlines.setdefault(worker_id, time.monotonic() + self.lease_s)

    def state(self, worker_id: str) -> WorkerState:
        try:
            return self.workers[worker_id]
        except KeyError:
            raise StateError(f"run {self.run.run_id} has no worker {worker_id}", worker_id=worker_id) from None

    def lease_free(self, worker_id: str) -> bool:
        return self.deadlines.get(worker_id, 0.0) <= time.monotonic()

    def propose_claim(self, worker_id: str, owner: str, force: bool = False) -> WorkerState | None:
        state, now = self.state(worker_id), time.time()
        claimable = state.status == "pending" or (state.status == "running" and self.lease_free(worker_id))
        if not (claimable or force):
            return None
        return state.model_copy(update={"status": "running", "owner": owner, "started_at": now, "updated_at": now})

    def renew(self, worker_id: str, owner: str, force: bool = False) -> bool:
        state = self.workers.get(worker_id)
        if force or (state is not None and state.status == "running" and state.owner == owner):
            self.deadlines[worker_id] = time.monotonic() + self.lease_s
            return True
        return False

    def propose_finish(
        self, worker_id: str, owner: str, status: str, fields: Mapping[str, Any], force: bool = False
    ) -> WorkerState | None:
        state, now = self.state(worker_id), time.time()
        if not (force or (state.status == "running" and state.owner == owner)):
            return None
        update = {"status": status, "finished_at": now, "updated_at": now, **fields}
        return state.model_copy(update=update)

    def propose_skip(self, worker_id: str, fields: Mapping[str, Any], force: bool = False) -> WorkerState | None:
        state, now = self.state(worker_id), time.time()
        skippable = state.status == "pending" or (state.status == "running" and self.lease_free(worker_id))
        if not (skippable or force):
            return None
        return state.model_copy(update={"status": "skipped", "finished_at": now, "updated_at": now, **fields})

    def propose_reset(self, worker_id: str) -> WorkerState:
        state = self.workers.get(worker_id) or WorkerState(worker_id=worker_id)
        update = {"status": "pending", "owner": "", "error": "", "started_at": 0.0, "finished_at": 0.0,
                  "files": [], "updated_at": time.time()}
        return state.model_copy(update=update)

    def propose_update(self, worker_id: str, fields: Mapping[str, Any]) -> WorkerState:
        return self.state(worker_id).model_copy(update={"updated_at": time.time(), **fields})

    def commit(self, state: WorkerState, lease: Lease) -> None:
        self.workers[state.worker_id] = state
        if lease == "set":
            self.deadlines[state.worker_id] = time.monotonic() + self.lease_s
        elif lease == "drop":
            self.deadlines.pop(state.worker_id, None)

    def refresh(self, state: WorkerState) -> None:
        """Take a state read from Redis."""
        if state.status != "running":
            self.deadlines.pop(state.worker_id, None)
        elif state.worker_id not in self.deadlines:
            self.deadlines[state.worker_id] = time.monotonic() + self.lease_s
        self.workers[state.worker_id] = state

    def expired(self) -> list[str]:
        return sorted(w for w, s in self.workers.items() if s.status == "running" and self.lease_free(w))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for state in self.workers.values():
            counts[state.status] += 1
        return counts


# --------------------------------------------------------------------------- the store


class ResilientStateStore:
    """StateStore over RedisStateStore that falls back to a mirror + Journal (module docstring)."""

    def __init__(self, store: RedisStateStore, journal: Journal, *, reconnect_interval_s: float = 1.0) -> None:
        self.store = store
        self.journal = journal
        self.lease_s = store.lease_s
        self.reconnect_interval_s = reconnect_interval_s
        self._lock = threading.RLock()
        self._runs: dict[str, RunMirror] = {}
        self._degraded = False
        self._last_attempt = 0.0
        self._journal_failed = False
        try:
            self.store.ping()
            self._recover_unsynced()
        except StateUnavailable as exc:
            self._enter_degraded(exc)

    @property
    def degraded(self) -> bool:
        """True while Redis is away and the journal is the store of record."""
        return self._degraded

    # ------------------------------------------------------------------ runs

    def create_run(self, run: RunRecord, worker_ids: Iterable[str]) -> None:
        ids = list(dict.fromkeys(worker_ids))

        def remote() -> None:
            self.store.create_run(run, ids)
            self._adopt_new_run(run, ids)

        def local() -> None:
            if self._mirror(run.run_id) is not None:
                raise StateError(f"run {run.run_id} already exists")
            self._adopt_new_run(run, ids)

        self._call(remote, local)

    def get_run(self, run_id: str) -> RunRecord | None:
        def remote() -> RunRecord | None:
            mirror = self._mirror(run_id)
            run = self.store.get_run(run_id)
            if mirror is not None and run is not None:
                mirror.run = run
            return run

        def local() -> RunRecord | None:
            mirror = self._mirror(run_id)
            return mirror.run.model_copy() if mirror else None

        return self._call(remote, local)

    def latest_run_id(self) -> str | None:
        def local() -> str | None:
            known = [(m.run.created_at, run_id) for run_id, m in self._runs.items()]
            journalled = journal_latest_run_id(self.journal.path)
            if journalled and journalled not in self._runs:
                mirror = self._mirror(journalled)
                if mirror is not None:
                    known.append((mirror.run.created_at, journalled))
            return max(known)[1] if known else None

        def remote() -> str | None:
            # Redis that lost everything (a wiped data dir) still resumes the journal's runs.
            return self.store.latest_run_id() or journal_latest_run_id(self.journal.path)

        return self._call(remote, local)

    def update_run(self, run_id: str, **fields: Any) -> None:
        checked = check_fields(RunRecord, fields, PROTECTED_RUN_FIELDS)
        checked.setdefault("updated_at", time.time())

        def apply() -> None:
            mirror = self._required(run_id)
            run = mirror.run.model_copy(update=checked)
            self._journal("update_run", run_id, fields=checked, run=run.model_dump())
            mirror.run = run

        self._call(lambda: self._remote(run_id, lambda: self.store.update_run(run_id, **checked), apply), apply)

    # ------------------------------------------------------------------ workers

    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        def remote() -> bool:
            self._mirror(run_id)
            won = self.store.claim(run_id, worker_id, owner)
            if won:
                self._worker_op(run_id, worker_id, "claim", lambda m: m.propose_claim(worker_id, owner, True), "set",
                                owner=owner)
            else:
                self._refresh_worker(run_id, worker_id)
            return won

        def local() -> bool:
            return self._worker_op(run_id, worker_id, "claim", lambda m: m.propose_claim(worker_id, owner), "set",
                                   owner=owner)

        return self._call(remote, local)

    def renew(self, run_id: str, worker_id: str, owner: str) -> bool:
        def remote() -> bool:
            held = self.store.renew(run_id, worker_id, owner)
            mirror = self._runs.get(run_id)
            if held and mirror is not None:
                mirror.renew(worker_id, owner, force=True)
            return held

        def local() -> bool:
            return self._required(run_id).renew(worker_id, owner)

        return self._call(remote, local)

    def update_worker(self, run_id: str, worker_id: str, **fields: Any) -> None:
        checked = check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS)

        def apply() -> None:
            self._worker_op(run_id, worker_id, "update_worker", lambda m: m.propose_update(worker_id, checked),
                            "keep", fields=checked)

        self._call(lambda: self._remote(run_id, lambda: self.store.update_worker(run_id, worker_id, **checked), apply),
                   apply)

    def finish(self, run_id: str, worker_id: str, owner: str, status: str, **fields: Any) -> bool:
        if status not in FINAL_STATUSES:
            raise StateError(f"{status!r} is not a final status ({', '.join(sorted(FINAL_STATUSES))})")
        checked = check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS)

        def op(force: bool) -> bool:
            return self._worker_op(
                run_id, worker_id, "finish", lambda m: m.propose_finish(worker_id, owner, status, checked, force),
                "drop", owner=owner, status=status, fields=checked,
            )

        return self._transition(
            run_id, worker_id, lambda: self.store.finish(run_id, worker_id, owner, status, **checked), op
        )

    def _transition(
        self, run_id: str, worker_id: str, in_redis: Callable[[], bool], op: Callable[[bool], bool]
    ) -> bool:
        """A status script in Redis, mirrored locally when it took; the mirror alone while degraded."""

        def remote() -> bool:
            self._mirror(run_id)
            done = in_redis()
            if done:
                op(True)
            else:
                self._refresh_worker(run_id, worker_id)
            return done

        return self._call(remote, lambda: op(False))

    def skip(self, run_id: str, worker_id: str, **fields: Any) -> bool:
        """pending (or running with an expired lease) → skipped."""
        checked = check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS)

        def op(force: bool) -> bool:
            return self._worker_op(run_id, worker_id, "skip", lambda m: m.propose_skip(worker_id, checked, force),
                                   "drop", fields=checked)

        return self._transition(run_id, worker_id, lambda: self.store.skip(run_id, worker_id, **checked), op)

    def reset_worker(self, run_id: str, worker_id: str) -> None:
        def apply() -> None:
            self._worker_op(run_id, worker_id, "reset_worker", lambda m: m.propose_reset(worker_id), "drop")

        self._call(lambda: self._remote(run_id, lambda: self.store.reset_worker(run_id, worker_id), apply), apply)

    def worker(self, run_id: str, worker_id: str) -> WorkerState | None:
        def remote() -> WorkerState | None:
            mirror = self._mirror(run_id)
            state = self.store.worker(run_id, worker_id)
            if mirror is not None and state is not None:
                mirror.refresh(state)
            return state

        def local() -> WorkerState | None:
            mirror = self._mirror(run_id)
            state = mirror.workers.get(worker_id) if mirror else None
            return state.model_copy() if state else None

        return self._call(remote, local)

    def workers(self, run_id: str) -> dict[str, WorkerState]:
        def remote() -> dict[str, WorkerState]:
            mirror = self._mirror(run_id)
            states = self.store.workers(run_id)
            if mirror is not None:
                for state in states.values():
                    mirror.refresh(state)
            return states

        def local() -> dict[str, WorkerState]:
            mirror = self._mirror(run_id)
            return {w: s.model_copy() for w, s in sorted(mirror.workers.items())} if mirror else {}

        return self._call(remote, local)

    def expired_running(self, run_id: str) -> list[str]:
        return self._call(lambda: self.store.expired_running(run_id), lambda: self._required(run_id).expired())

    def counts(self, run_id: str) -> dict[str, int]:
        return self._call(lambda: self.store.counts(run_id), lambda: self._required(run_id).counts())

    def summary(self, run_id: str) -> RunSummary:
        def local() -> RunSummary:
            mirror = self._required(run_id)
            return summarise(mirror.run, mirror.workers, mirror.expired())

        return self._call(lambda: self.store.summary(run_id), local)

    # ------------------------------------------------------------------ events

    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        encode_event(event)  # validates before anything is written
        stamped = redact_value({"ts": time.time(), **event})

        def apply() -> None:
            mirror = self._required(run_id)
            self._journal("event", run_id, event=stamped)
            mirror.events.append(stamped)

        self._call(lambda: self._remote(run_id, lambda: self.store.append_event(run_id, stamped), apply), apply)

    def events(self, run_id: str, count: int = 100) -> list[dict[str, Any]]:
        """From Redis; while degraded, the events this launcher recorded (oldest first)."""

        def local() -> list[dict[str, Any]]:
            mirror = self._mirror(run_id)
            return list(mirror.events)[-count:] if mirror and count > 0 else []

        return self._call(lambda: self.store.events(run_id, count), local)

    # ------------------------------------------------------------------ connection

    def try_reconnect(self) -> bool:
        """Try Redis now (ignoring the rate limit); re-sync if it is back. True when not degraded."""
        with self._lock:
            self._last_attempt = 0.0
            self._maybe_reconnect()
            return not self._degraded

    def close(self) -> None:
        with self._lock:
            self.store.close()
            self.journal.close()

    # ------------------------------------------------------------------ internals

    def _call(self, remote: Callable[[], T], local: Callable[[], T]) -> T:
        """Redis first; on StateUnavailable switch to degraded mode and answer locally."""
        with self._lock:
            self._maybe_reconnect()
            if not self._degraded:
                try:
                    return remote()
                except StateUnavailable as exc:
                    self._enter_degraded(exc)
            return local()

    def _remote(self, run_id: str, redis_op: Callable[[], None], apply: Callable[[], None]) -> None:
        """A mutation whose Redis outcome cannot be refused: load the mirror, write, mirror it."""
        self._mirror(run_id)
        redis_op()
        if run_id in self._runs:
            apply()

    def _worker_op(
        self, run_id: str, worker_id: str, op: str, propose: Callable[[RunMirror], WorkerState | None],
        lease: Lease, **data: Any,
    ) -> bool:
        """Propose on the mirror; if allowed, journal the new state, then commit it.

        After Redis already applied the mutation (normal mode) the proposal is forced; a worker
        the mirror does not know yet is read from Redis first."""
        if self._degraded:
            mirror = self._mirror(run_id)
            if mirror is None:
                raise StateError(f"no such run {run_id} (Redis is away and the journal does not have it)")
        else:
            mirror = self._runs.get(run_id)
            if mirror is not None and worker_id not in mirror.workers and op != "reset_worker":
                self._refresh_worker(run_id, worker_id)
            if mirror is None or (worker_id not in mirror.workers and op != "reset_worker"):
                return True
        state = propose(mirror)
        if state is None:
            return False
        self._journal(op, run_id, worker_id=state.worker_id, state=state.model_dump(), **data)
        mirror.commit(state, lease)
        return True

    def _adopt_new_run(self, run: RunRecord, ids: list[str]) -> None:
        waves = wave_of(run)
        record = run.model_copy(update={"updated_at": run.updated_at or time.time()})
        self._journal("create_run", run.run_id, run=record.model_dump(), workers=ids)
        workers = {w: WorkerState(worker_id=w, wave=waves.get(w, 0), updated_at=time.time()) for w in ids}
        self._runs[run.run_id] = RunMirror(record, workers, self.lease_s)

    def _journal(self, op: str, run_id: str | None, **data: Any) -> None:
        """Durably record a mutation. Degraded: failure is an error. Normal: Redis has it; warn once."""
        try:
            self.journal.append(op, run_id, **data)
        except StateError:
            if self._degraded:
                raise
            if not self._journal_failed:
                log.warning("the state journal %s cannot be written; Redis still holds the state",
                            self.journal.path, exc_info=True)
                self._journal_failed = True

    def _mirror(self, run_id: str) -> RunMirror | None:
        """The run's mirror, loaded on first access (from Redis, or the journal while degraded)."""
        mirror = self._runs.get(run_id)
        if mirror is not None:
            return mirror
        if self._degraded:
            rebuilt = rebuild_run(self.journal.entries(run_id), run_id, self.journal.path)
            if rebuilt is None:
                return None
            mirror = RunMirror(rebuilt.run, rebuilt.workers, self.lease_s)
            mirror.events.extend(rebuilt.events)
        else:
            run = self.store.get_run(run_id)
            if run is None and _restore_run(self.store, self.journal.path, run_id):
                run = self.store.get_run(run_id)
            if run is None:
                return None
            mirror = RunMirror(run, self.store.workers(run_id), self.lease_s)
        self._runs[run_id] = mirror
        return mirror

    def _required(self, run_id: str) -> RunMirror:
        mirror = self._mirror(run_id)
        if mirror is None:
            raise StateError(f"no such run {run_id}")
        return mirror

    def _refresh_worker(self, run_id: str, worker_id: str) -> None:
        """After Redis refused a transition the mirror may be stale: re-read that worker."""
        mirror = self._runs.get(run_id)
        if mirror is None:
            return
        with contextlib.suppress(StateUnavailable):
            state = self.store.worker(run_id, worker_id)
            if state is not None:
                mirror.refresh(state)

    def _enter_degraded(self, exc: BaseException) -> None:
        if self._degraded:
            return
        self._degraded = True
        self._last_attempt = time.monotonic()
        self.journal.append("degraded", None, reason=str(exc))
        log.warning(
            "%s; continuing in degraded mode on the journal %s (claims are exclusive only within "
            "this launcher until Redis is back)", exc, self.journal.path,
        )

    def _maybe_reconnect(self) -> None:
        """While degraded: at most once per interval, ping Redis and re-sync if it answers."""
        if not self._degraded or time.monotonic() - self._last_attempt < self.reconnect_interval_s:
            return
        self._last_attempt = time.monotonic()
        try:
            self.store.ping()
            self._resync()
        except StateUnavailable as exc:
            log.debug("Redis still unavailable: %s", exc)

    def _resync(self) -> None:
        """Replay the degraded window (and any other unsynced one), re-take live leases, leave
        degraded mode."""
        if self.journal.writer not in self._recover_unsynced():
            self.journal.append("resynced", None, for_writer=self.journal.writer, upto=0)
        for run_id, mirror in self._runs.items():
            for worker_id in sorted(mirror.deadlines):
                state = mirror.workers.get(worker_id)
                if state is not None and state.status == "running" and not mirror.lease_free(worker_id):
                    self.store.renew(run_id, worker_id, state.owner)
        self._degraded = False

    def _recover_unsynced(self) -> set[str]:
        """Replay every degraded window no `resynced` marker closed: this launcher's own, and
        those of launchers that died while Redis was away. Returns the writers replayed."""
        windows = unsynced_entries(self.journal.entries())
        for writer, entries in windows.items():
            applied = replay_entries(self.store, entries, self.journal.path)
            self.journal.append("resynced", None, for_writer=writer, upto=entries[-1]["seq"])
            own = writer == self.journal.writer
            log.log(logging.INFO if own else logging.WARNING,
                    "Redis is back: replayed %d of %d journal entries %s wrote while it was away",
                    applied, len(entries), "this launcher" if own else f"launcher {writer}")
        return set(windows)


def open_state_store(
    config: StateConfig, base_dir: str | Path, environ: Mapping[str, str] | None = None
) -> tuple[ResilientStateStore, PrivateRedis | None]:
    """The launcher's StateStore: Redis (REDIS_URL, config, or a private server) plus the journal.

    If the private redis-server cannot start, the store begins degraded on the journal. The
    caller closes the store, then stops the returned PrivateRedis."""
    try:
        client, server = connect(config, base_dir, environ)
    except StateError as exc:
        log.warning("cannot start the private redis-server: %s", exc)
        data_dir = (Path(base_dir) / config.redis_dir).resolve()
        client, server = make_client(f"unix://{socket_path_for(data_dir)}"), None
    store = RedisStateStore.from_config(client, config)
    journal = Journal(Path(base_dir) / config.journal_path)
    return ResilientStateStore(store, journal, reconnect_interval_s=config.reconnect_interval_s), server
