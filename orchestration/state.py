"""Run state in Redis: runs, per-worker states, leases and an event stream.

Key layout (`p` is `state.key_prefix`, default "workforce"; every value is a string, redis-py
runs with decode_responses=True):

    {p}:executions                                    zset    run_id → created_at
    {p}:execution:{run_id}                            hash    RunRecord fields
    {p}:execution:{run_id}:worker:{WORKER_ID}         hash    WorkerState fields
    {p}:execution:{run_id}:lease:{WORKER_ID}          string  owner, PX = lease_s
    {p}:execution:{run_id}:status:{status}            set     worker ids in that status
    {p}:execution:{run_id}:events                     stream  XADD MAXLEN ~ 10000
    {p}:execution:{run_id}:replayed                   set     journal entries already replayed

Hash fields: `str` (and string Literal) fields are stored as they are, every other field as
JSON (`3`, `1.5`, `null`, `["a.py"]`, `{...}`). Stream entries store each event key with a
JSON value. Loading validates with the pydantic model (`type`, `version`) and raises
StateError naming the key on bad data.

Worker status moves only through Lua scripts, so two launchers can never both hold a worker:

    claim    pending, or running whose lease key has expired → running, owner, lease PX
    renew    lease held by owner (or expired, still running and owned by owner) → lease PX
    finish   running, lease held by owner (or expired and owner matches) → passed | failed |
             escalated | skipped; lease deleted
    skip     pending, or running with an expired lease → skipped (no lease needed)
    reset    anything → pending (an instruction changed under `--replan`); creates a
             worker the run does not have yet (added under `--replan`)

Every script also moves the worker id between the status sets, so `counts` is six SCARDs.
`merge_*` are the idempotent writes the journal replays after an outage (see journal.py).

Redis exceptions are translated at this boundary: connection-like failures (connection
refused or dropped, timeouts, LOADING, MISCONF, read-only replica) raise `StateUnavailable`,
everything else `StateError`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis
from pydantic import BaseModel, TypeAdapter, ValidationError

from orchestration.config import StateConfig
from orchestration.errors import StateError
from orchestration.records import FINAL_STATUSES, RunRecord, WorkerState
from orchestration.redaction import redact

STATUSES: tuple[str, ...] = ("pending", "running", "passed", "failed", "escalated", "skipped")
SUPPORTED_VERSION = 1
EVENTS_MAXLEN = 10_000
PROTECTED_WORKER_FIELDS = frozenset({"type", "version", "worker_id", "status", "owner"})
"""Changed only by the status scripts (claim, finish, skip, reset)."""
PROTECTED_RUN_FIELDS = frozenset({"type", "version", "run_id", "created_at"})
FREE_TEXT_FIELDS = frozenset({"error", "reason"})
"""Fields redacted before they are stored (messages may quote secrets)."""
_ID = re.compile(r"^[^\s:{}*?\[\]]+$")

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class StateUnavailable(StateError):
    """Redis cannot be reached (or refuses writes for now); the journal can take over."""


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class Keys:
    """The key layout of the module docstring."""

    prefix: str = "workforce"

    def executions(self) -> str:
        return f"{self.prefix}:executions"

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:execution:{run_id}"

    def worker(self, run_id: str, worker_id: str) -> str:
        return f"{self.run(run_id)}:worker:{worker_id}"

    def lease(self, run_id: str, worker_id: str) -> str:
        return f"{self.run(run_id)}:lease:{worker_id}"

    def status(self, run_id: str, status: str) -> str:
        return f"{self.run(run_id)}:status:{status}"

    def status_sets(self, run_id: str) -> list[str]:
        return [self.status(run_id, status) for status in STATUSES]

    def events(self, run_id: str) -> str:
        return f"{self.run(run_id)}:events"

    def replayed(self, run_id: str) -> str:
        return f"{self.run(run_id)}:replayed"


# --------------------------------------------------------------------------- encoding


def _is_text(annotation: Any) -> bool:
    """`str`, or a Literal of strings: stored in a hash without JSON quoting."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    return False


@functools.cache
def _text_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, info in model.model_fields.items() if _is_text(info.annotation))


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(model.model_fields[name].annotation or Any)


def encode_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Hash field values: strings as they are, everything else as JSON."""
    return {name: value if isinstance(value, str) else json.dumps(value) for name, value in values.items()}


def redact_value(value: Any) -> Any:
    """`value` with secrets masked in every string it contains."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def redact_free_text(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with secrets masked in its free-text fields (`error`, `reason`)."""
    return {k: redact_value(v) if k in FREE_TEXT_FIELDS else v for k, v in values.items()}


def decode_model(model: type[M], data: Mapping[str, str], key: str) -> M:
    """Validate a hash as `model`; StateError naming `key` when it is not one."""
    if not data:
        raise StateError(f"{key}: missing or empty hash")
    if "type" not in data or "version" not in data:
        raise StateError(f"{key}: not a {model.__name__} (no type/version field)")
    text = _text_fields(model)
    values: dict[str, Any] = {}
    for name, raw in data.items():
        if name not in model.model_fields:
            raise StateError(f"{key}: unknown field {name!r} for {model.__name__}")
        try:
            values[name] = raw if name in text else json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StateError(f"{key}: field {name!r} is not valid JSON: {raw[:80]!r}") from exc
    try:
        record = model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise StateError(f"{key}: invalid {model.__name__}: {problems}") from exc
    if getattr(record, "version", SUPPORTED_VERSION) > SUPPORTED_VERSION:
        raise StateError(f"{key}: version {record.version} is newer than this workforce supports")  # type: ignore[attr-defined]
    return record


def check_fields(model: type[BaseModel], fields: Mapping[str, Any], protected: frozenset[str]) -> dict[str, Any]:
    """Validate partial updates field by field; secrets are masked in free-text fields."""
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in model.model_fields:
            raise StateError(f"unknown {model.__name__} field {name!r}")
        if name in protected:
            raise StateError(f"{model.__name__} field {name!r} cannot be set this way")
        try:
            checked[name] = _adapter(model, name).validate_python(value)
        except ValidationError as exc:
            raise StateError(f"{model.__name__}.{name}: {exc.errors()[0]['msg']}") from exc
        if name in FREE_TEXT_FIELDS:
            checked[name] = redact_value(checked[name])
    return checked


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise StateError(f"invalid {kind} {value!r}: no whitespace, ':', braces or glob characters")
    return value


def encode_event(event: Mapping[str, Any]) -> dict[str, str]:
    """Stream fields: each key's value as JSON, secrets masked, `ts` added when absent."""
    if not isinstance(event, Mapping) or not all(isinstance(key, str) for key in event):
        raise StateError("an event is a mapping with string keys")
    data = {"ts": time.time(), **redact_value(dict(event))}
    try:
        return {key: json.dumps(value) for key, value in data.items()}
    except (TypeError, ValueError) as exc:
        raise StateError(f"event is not JSON-serialisable: {exc}") from exc


def _decode_event(fields: Mapping[str, str], key: str, entry_id: str) -> dict[str, Any]:
    try:
        return {name: json.loads(value) for name, value in fields.items()}
    except json.JSONDecodeError as exc:
        raise StateError(f"{key}: event {entry_id} is not valid JSON") from exc


# --------------------------------------------------------------------------- errors


def merge_allowed(current: str | None, new: str, *, reset: bool = False) -> bool:
    """The replay rule (same as the merge script): final wins over running/pending, `passed`
    is never regressed, except by an explicit reset."""
    if reset or current is None:
        return True
    if current == "passed":
        return new == "passed"
    return not (current in FINAL_STATUSES and new not in FINAL_STATUSES)


def is_unavailable(exc: BaseException) -> bool:
    """Connection-like Redis failures: the server is away, not the request wrong."""
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.AuthorizationError):
        return False
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.ReadOnlyError):
        return True
    transient = ("MISCONF", "LOADING", "MASTERDOWN", "TRYAGAIN")
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(transient)


def translated(method: Callable[P, T]) -> Callable[P, T]:
    """Turn redis-py exceptions into StateUnavailable / StateError (`raise … from`)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            if is_unavailable(exc):
                raise StateUnavailable(f"Redis is unavailable ({method.__name__}): {exc}") from exc
            raise StateError(f"Redis error in {method.__name__}: {exc}") from exc

    return wrapper


# --------------------------------------------------------------------------- Lua

_HSET_JSON = """
local function hset_json(key, encoded)
  local args = {}
  for name, value in pairs(cjson.decode(encoded)) do
    args[#args + 1] = name
    args[#args + 1] = value
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
"""

_PRELUDE = _HSET_JSON + """
local STATUSES = {'pending', 'running', 'passed', 'failed', 'escalated', 'skipped'}
local FINAL = {passed = true, failed = true, escalated = true, skipped = true}
-- KEYS[1] worker hash, KEYS[2] lease, KEYS[3..8] the status sets in STATUSES order
local function move(worker_id, to)
  for i, status in ipairs(STATUSES) do
    if status == to then
      redis.call('SADD', KEYS[2 + i], worker_id)
    else
      redis.call('SREM', KEYS[2 + i], worker_id)
    end
  end
end
local function lease_free()
  return redis.call('EXISTS', KEYS[2]) == 0
end
"""

# ARGV: worker_id, owner, lease_ms, now
_CLAIM = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'pending' or (status == 'running' and lease_free()) then
  redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[2], 'started_at', ARGV[4],
             'updated_at', ARGV[4])
  move(ARGV[1], 'running')
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# ARGV: worker_id, owner, lease_ms
_RENEW = _PRELUDE + """
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[2] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
if not holder and redis.call('HGET', KEYS[1], 'status') == 'running'
   and redis.call('HGET', KEYS[1], 'owner') == ARGV[2] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# ARGV: worker_id, owner, status, now, fields_json
_FINISH = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status ~= 'running' then return 0 end
local holder = redis.call('GET', KEYS[2])
local owns = holder == ARGV[2] or (not holder and redis.call('HGET', KEYS[1], 'owner') == ARGV[2])
if not owns then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[4], 'updated_at', ARGV[4])
hset_json(KEYS[1], ARGV[5])
move(ARGV[1], ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""

# ARGV: worker_id, now, fields_json
_SKIP = _PRELUDE + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'pending' or (status == 'running' and lease_free()) then
  redis.call('HSET', KEYS[1], 'status', 'skipped', 'finished_at', ARGV[2], 'updated_at', ARGV[2])
  hset_json(KEYS[1], ARGV[3])
  move(ARGV[1], 'skipped')
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

# ARGV: worker_id, now, new_worker_json (written when the worker does not exist yet)
_RESET = _PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 0 then hset_json(KEYS[1], ARGV[3]) end
redis.call('HSET', KEYS[1], 'status', 'pending', 'owner', '', 'error', '', 'started_at', '0',
           'finished_at', '0', 'files', '[]', 'updated_at', ARGV[2])
move(ARGV[1], 'pending')
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS[1] hash; ARGV: fields_json
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local args = {}
for name, value in pairs(cjson.decode(ARGV[1])) do
  args[#args + 1] = name
  args[#args + 1] = value
end
if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
return 1
"""

# KEYS: run hash, executions zset, pending set, worker hashes...
# ARGV: mode ('create' | 'merge'), run_id, created_at, run_json, worker_template_json,
#       waves_json (worker id → wave), worker ids...
_CREATE_RUN = _HSET_JSON + """
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists and ARGV[1] == 'create' then return -1 end
if not exists then hset_json(KEYS[1], ARGV[4]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
local waves = cjson.decode(ARGV[6])
local created = 0
for i = 7, #ARGV do
  local key = KEYS[i - 3]
  if redis.call('EXISTS', key) == 0 then
    hset_json(key, ARGV[5])
    redis.call('HSET', key, 'worker_id', ARGV[i], 'wave', tostring(waves[ARGV[i]] or 0))
    redis.call('SADD', KEYS[3], ARGV[i])
    created = created + 1
  end
end
return created
"""

# ARGV: worker_id, snapshot_json, status, owner, lease_ms, op
_MERGE_WORKER = _PRELUDE + """
local current = redis.call('HGET', KEYS[1], 'status')
local new = ARGV[3]
if ARGV[6] ~= 'reset' then
  if current == 'passed' and new ~= 'passed' then return 0 end
  if current and FINAL[current] and not FINAL[new] then return 0 end
end
local holder = redis.call('GET', KEYS[2])
if new == 'running' then
  if holder and holder ~= ARGV[4] then return 0 end
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[2])
end
hset_json(KEYS[1], ARGV[2])
move(ARGV[1], new)
return 1
"""

# KEYS: stream, replayed set; ARGV: token, maxlen, field, value, ...
_MERGE_EVENT = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
return 1
"""

# KEYS[1] running set; ARGV[1] lease key prefix (ends with ':lease:')
_EXPIRED = """
local expired = {}
for _, worker_id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. worker_id) == 0 then expired[#expired + 1] = worker_id end
end
return expired
"""


# --------------------------------------------------------------------------- summary


@dataclass
class RunSummary:
    """What a `status` command shows about one run."""

    run: RunRecord
    counts: dict[str, int]
    total: int
    finished: int
    tokens: int
    cost_usd: float
    running: dict[str, str] = field(default_factory=dict)
    """Running worker id → lease owner."""
    expired: list[str] = field(default_factory=list)
    """Running workers whose lease has expired (their launcher is gone)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.model_dump(),
            "counts": self.counts,
            "total": self.total,
            "finished": self.finished,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "running": self.running,
            "expired": self.expired,
        }


def summarise(run: RunRecord, workers: Mapping[str, WorkerState], expired: Iterable[str]) -> RunSummary:
    """Counts and totals over a run's worker states."""
    counts = dict.fromkeys(STATUSES, 0)
    for state in workers.values():
        counts[state.status] += 1
    return RunSummary(
        run=run,
        counts=counts,
        total=len(workers),
        finished=sum(counts[s] for s in FINAL_STATUSES),
        tokens=sum(s.tokens for s in workers.values()),
        cost_usd=round(sum(s.cost_usd for s in workers.values()), 6),
        running={w: s.owner for w, s in sorted(workers.items()) if s.status == "running"},
        expired=sorted(expired),
    )


def wave_of(run: RunRecord) -> dict[str, int]:
    """Worker id → the priority of the wave that plans it (from `run.waves`)."""
    waves: dict[str, int] = {}
    for wave in run.waves:
        for lane in wave.get("lanes", []):
            for worker_id in lane:
                waves[str(worker_id)] = int(wave.get("priority", 0))
    return waves


# --------------------------------------------------------------------------- store


class RedisStateStore:
    """StateStore on Redis (layout and atomic transitions in the module docstring).

    The store owns `client` (close() closes it); the client must use decode_responses=True.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "workforce",
        lease_s: float = 30.0,
        events_maxlen: int = EVENTS_MAXLEN,
    ) -> None:
        if not client.get_connection_kwargs().get("decode_responses"):
            raise StateError("RedisStateStore needs a client created with decode_responses=True")
        if lease_s <= 0:
            raise StateError(f"lease_s must be positive, not {lease_s}")
        self.client = client
        self._r: Any = client
        """The same client, untyped: with decode_responses=True every reply is str, not bytes | str."""
        self.keys = Keys(key_prefix)
        self.lease_s = lease_s
        self.events_maxlen = events_maxlen
        self._lease_ms = max(1, int(lease_s * 1000))
        script = client.register_script
        self._claim = script(_CLAIM)
        self._renew = script(_RENEW)
        self._finish = script(_FINISH)
        self._skip = script(_SKIP)
        self._reset = script(_RESET)
        self._update = script(_UPDATE)
        self._create_run = script(_CREATE_RUN)
        self._merge_worker = script(_MERGE_WORKER)
        self._merge_event = script(_MERGE_EVENT)
        self._expired = script(_EXPIRED)

    @classmethod
    def from_config(cls, client: redis.Redis, config: StateConfig) -> RedisStateStore:
        return cls(client, key_prefix=config.key_prefix, lease_s=config.lease_s)

    # ------------------------------------------------------------------ runs

    @translated
    def ping(self) -> bool:
        """True when Redis answers; StateUnavailable when it does not."""
        return bool(self._r.ping())

    @translated
    def create_run(self, run: RunRecord, worker_ids: Iterable[str]) -> None:
        """Store the run and a `pending` state for every planned worker; StateError if it exists."""
        if self._write_run("create", run, worker_ids) < 0:
            raise StateError(f"{self.keys.run(run.run_id)}: run already exists")

    @translated
    def get_run(self, run_id: str) -> RunRecord | None:
        key = self.keys.run(_check_id("run id", run_id))
        data = self._r.hgetall(key)
        return decode_model(RunRecord, data, key) if data else None

    @translated
    def latest_run_id(self) -> str | None:
        newest = self._r.zrevrange(self.keys.executions(), 0, 0)
        return newest[0] if newest else None

    @translated
    def run_ids(self, limit: int = 20) -> list[str]:
        """The newest `limit` run ids, newest first."""
        return list(self._r.zrevrange(self.keys.executions(), 0, max(0, limit - 1)))

    @translated
    def update_run(self, run_id: str, **fields: Any) -> None:
        values = check_fields(RunRecord, fields, PROTECTED_RUN_FIELDS)
        values.setdefault("updated_at", time.time())
        key = self.keys.run(_check_id("run id", run_id))
        if self._update(keys=[key], args=[json.dumps(encode_fields(values))]) < 0:
            raise StateError(f"{key}: no such run")

    @translated
    def delete_run(self, run_id: str) -> int:
        """Remove every key of the run; returns how many were deleted."""
        base = self.keys.run(_check_id("run id", run_id))
        doomed = [base, *self._r.scan_iter(match=f"{base}:*", count=500)]
        self._r.zrem(self.keys.executions(), run_id)
        return int(self._r.delete(*doomed))

    # ------------------------------------------------------------------ workers

    @translated
    def claim(self, run_id: str, worker_id: str, owner: str) -> bool:
        """pending (or running with an expired lease) → running, leased to `owner`."""
        now = time.time()
        result = self._claim(keys=self._worker_keys(run_id, worker_id), args=[worker_id, owner, self._lease_ms, now])
        return self._outcome(result, run_id, worker_id)

    @translated
    def renew(self, run_id: str, worker_id: str, owner: str) -> bool:
        """Extend `owner`'s lease; False if another launcher holds it or the worker is not running."""
        result = self._renew(keys=self._worker_keys(run_id, worker_id), args=[worker_id, owner, self._lease_ms])
        return bool(result)

    @translated
    def update_worker(self, run_id: str, worker_id: str, **fields: Any) -> None:
        """Non-status progress (attempt, provider, tokens, cost…)."""
        values = check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS)
        values.setdefault("updated_at", time.time())
        key = self.keys.worker(_check_id("run id", run_id), _check_id("worker id", worker_id))
        if self._update(keys=[key], args=[json.dumps(encode_fields(values))]) < 0:
            raise StateError(f"{key}: no such worker", worker_id=worker_id)

    @translated
    def finish(self, run_id: str, worker_id: str, owner: str, status: str, **fields: Any) -> bool:
        """running, leased to `owner` → a final status; releases the lease."""
        if status not in FINAL_STATUSES:
            raise StateError(f"{status!r} is not a final status ({', '.join(sorted(FINAL_STATUSES))})")
        values = encode_fields(check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS))
        args: list[str | float] = [worker_id, owner, status, time.time(), json.dumps(values)]
        result = self._finish(keys=self._worker_keys(run_id, worker_id), args=args)
        return self._outcome(result, run_id, worker_id)

    @translated
    def skip(self, run_id: str, worker_id: str, **fields: Any) -> bool:
        """pending (or running with an expired lease) → skipped, e.g. a dependency failed."""
        values = encode_fields(check_fields(WorkerState, fields, PROTECTED_WORKER_FIELDS))
        args: list[str | float] = [worker_id, time.time(), json.dumps(values)]
        result = self._skip(keys=self._worker_keys(run_id, worker_id), args=args)
        return self._outcome(result, run_id, worker_id)

    @translated
    def reset_worker(self, run_id: str, worker_id: str) -> None:
        """Back to `pending`, lease dropped; attempt, tokens and cost are kept.

        A worker the run does not have yet (added under `--replan`) is created pending."""
        keys = self._worker_keys(run_id, worker_id)
        if not self._r.exists(self.keys.run(run_id)):
            raise StateError(f"{self.keys.run(run_id)}: no such run", worker_id=worker_id)
        fresh = json.dumps(encode_fields(WorkerState(worker_id=worker_id).model_dump()))
        self._reset(keys=keys, args=[worker_id, time.time(), fresh])

    @translated
    def worker(self, run_id: str, worker_id: str) -> WorkerState | None:
        key = self.keys.worker(_check_id("run id", run_id), _check_id("worker id", worker_id))
        data = self._r.hgetall(key)
        return self._decode_worker(data, key, worker_id) if data else None

    @translated
    def workers(self, run_id: str) -> dict[str, WorkerState]:
        """Every worker of the run, by id (sorted)."""
        ids = sorted(self._r.sunion(self.keys.status_sets(_check_id("run id", run_id))))
        pipe = self._r.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(self.keys.worker(run_id, worker_id))
        states: dict[str, WorkerState] = {}
        for worker_id, data in zip(ids, pipe.execute(), strict=True):
            key = self.keys.worker(run_id, worker_id)
            if not data:
                raise StateError(f"{key}: listed in a status set but missing", worker_id=worker_id)
            states[worker_id] = self._decode_worker(data, key, worker_id)
        return states

    @translated
    def expired_running(self, run_id: str) -> list[str]:
        """`running` workers whose lease has expired (their launcher died or hung)."""
        running = self.keys.status(_check_id("run id", run_id), "running")
        lease_prefix = self.keys.lease(run_id, "")
        return sorted(self._expired(keys=[running], args=[lease_prefix]))

    @translated
    def counts(self, run_id: str) -> dict[str, int]:
        """Workers per status (every status present, zeros included)."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.status_sets(_check_id("run id", run_id)):
            pipe.scard(key)
        return dict(zip(STATUSES, (int(n) for n in pipe.execute()), strict=True))

    def summary(self, run_id: str) -> RunSummary:
        """Run record, counts, totals and expired leases, for a `status` command."""
        run = self.get_run(run_id)
        if run is None:
            raise StateError(f"{self.keys.run(run_id)}: no such run")
        return summarise(run, self.workers(run_id), self.expired_running(run_id))

    # ------------------------------------------------------------------ events

    @translated
    def append_event(self, run_id: str, event: dict[str, Any]) -> None:
        """XADD the event (each key a JSON value; `ts` added when absent)."""
        key = self.keys.events(_check_id("run id", run_id))
        self._r.xadd(key, encode_event(event), maxlen=self.events_maxlen, approximate=True)

    @translated
    def events(self, run_id: str, count: int = 100) -> list[dict[str, Any]]:
        """The latest `count` events, oldest first."""
        key = self.keys.events(_check_id("run id", run_id))
        entries = self._r.xrevrange(key, count=count)
        return [_decode_event(fields, key, entry_id) for entry_id, fields in reversed(entries)]

    # ------------------------------------------------------------------ replay

    @translated
    def merge_run(self, run: RunRecord, worker_ids: Iterable[str]) -> int:
        """Idempotent create_run: writes the run if missing, and each missing worker as pending.

        Returns how many workers were created."""
        return max(0, self._write_run("merge", run, worker_ids))

    @translated
    def merge_worker(self, run_id: str, state: WorkerState, *, reset: bool = False) -> bool:
        """Idempotently write a journalled worker snapshot; True if it was applied.

        A final status in Redis wins over a running/pending snapshot and `passed` is never
        regressed, except by a `reset` (an explicit `--replan`); a running snapshot is not
        applied over another owner's live lease and re-establishes the lease for its owner."""
        values = encode_fields(redact_free_text(state.model_dump()))
        args: list[str | int] = [state.worker_id, json.dumps(values), state.status, state.owner, self._lease_ms,
                "reset" if reset else "write"]
        return bool(self._merge_worker(keys=self._worker_keys(run_id, state.worker_id), args=args))

    @translated
    def merge_event(self, run_id: str, event: dict[str, Any], token: str) -> bool:
        """XADD the event unless an event with this `token` was merged before."""
        keys = [self.keys.events(_check_id("run id", run_id)), self.keys.replayed(run_id)]
        flat = [item for pair in encode_event(event).items() for item in pair]
        return bool(self._merge_event(keys=keys, args=[token, self.events_maxlen, *flat]))

    def close(self) -> None:
        """Close the client's connections."""
        with contextlib.suppress(redis.RedisError):
            self.client.close()

    # ------------------------------------------------------------------ helpers

    def _worker_keys(self, run_id: str, worker_id: str) -> list[str]:
        _check_id("run id", run_id)
        _check_id("worker id", worker_id)
        return [
            self.keys.worker(run_id, worker_id),
            self.keys.lease(run_id, worker_id),
            *self.keys.status_sets(run_id),
        ]

    def _outcome(self, result: Any, run_id: str, worker_id: str) -> bool:
        """Script result: 1 done, 0 refused, -1 unknown worker (StateError)."""
        if int(result) < 0:
            raise StateError(f"{self.keys.worker(run_id, worker_id)}: no such worker", worker_id=worker_id)
        return bool(result)

    def _decode_worker(self, data: Mapping[str, str], key: str, worker_id: str) -> WorkerState:
        state = decode_model(WorkerState, data, key)
        if state.worker_id != worker_id:
            raise StateError(f"{key}: holds worker {state.worker_id!r}", worker_id=worker_id)
        return state

    def _write_run(self, mode: str, run: RunRecord, worker_ids: Iterable[str]) -> int:
        run_id = _check_id("run id", run.run_id)
        ids = list(dict.fromkeys(_check_id("worker id", w) for w in worker_ids))
        record = run.model_copy(update={"updated_at": run.updated_at or time.time()})
        template = WorkerState(worker_id="-", updated_at=time.time()).model_dump(exclude={"worker_id", "wave"})
        keys = [self.keys.run(run_id), self.keys.executions(), self.keys.status(run_id, "pending")]
        keys += [self.keys.worker(run_id, w) for w in ids]
        args: list[str | float] = [
            mode, run_id, run.created_at,
            json.dumps(encode_fields(redact_free_text(record.model_dump()))),
            json.dumps(encode_fields(template)),
            json.dumps(wave_of(run)),
            *ids,
        ]
        return int(self._create_run(keys=keys, args=args))
