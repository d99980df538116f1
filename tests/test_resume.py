"""Kill and resume, end to end: the launcher as a subprocess on the demo workforce.

Each test copies the demo workforce (ai-workers/workers and ai-workers/replays) into its own
workspace, which is the launcher's working directory (results, build dirs and `.workforce` stay
there), starts `launch_workforce.py --all --provider replay` with a pause before every recorded
reply, SIGKILLs it at one point, and runs `--resume RUN_ID` to completion. Afterwards:

* every worker is `passed`, with exactly one `integrated` or `rolled_forward` event;
* no worker that had passed before the kill made a model call after the resume started
  (model_call events carry no worker id, so their number after the resume must equal the
  recorded replies of exactly the attempts started after it);
* every result file says passed and `execution_summary.json` has passed == total == 15;
* pytest passes inside the target tree;
* no process the killed launcher had started is alive (its private redis-server included,
  which the resumed launcher adopts and stops).

The helpers here are shared with test_redis_restart.py and test_retrospective_replay.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import redis
import yaml

from orchestration.loader import load_workers
from orchestration.redis_server import PrivateRedis, make_client, socket_path_for

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "orchestration" / "launch_workforce.py"
PYTHON = sys.executable
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
WORKERS = [f"WORKER_{n:03d}" for n in range(1, 16)]
WAVE_1 = WORKERS[:5]
TARGET = "validation_build/demo-target"
PREFIX = "workforce"
REPLY_DELAY_S = 0.2
"""Pause before every recorded reply: a worker takes about a second, long enough to kill it mid-way."""

T = TypeVar("T")

CRASH_AT = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
worker, point = sys.argv[1], sys.argv[2]
if point == "before-merge":  # the manifest is recorded, no file is merged yet
    from orchestration.integration import IntegrationManager
    merge = IntegrationManager.integrate
    def integrate(self, instruction, *args, **kwargs):
        if instruction.worker_id == worker:
            os.kill(os.getpid(), signal.SIGKILL)
        return merge(self, instruction, *args, **kwargs)
    IntegrationManager.integrate = integrate
elif point == "before-finish":  # merged, `integrated` event and result file written, not finished
    from orchestration.journal import ResilientStateStore
    finish = ResilientStateStore.finish
    def finish_or_die(self, run_id, worker_id, *args, **kwargs):
        if worker_id == worker:
            os.kill(os.getpid(), signal.SIGKILL)
        return finish(self, run_id, worker_id, *args, **kwargs)
    ResilientStateStore.finish = finish_or_die
else:
    raise SystemExit("unknown crash point " + point)
from orchestration.launch_workforce import main
sys.exit(main(sys.argv[3:]))
"""
"""A launcher that SIGKILLs itself at a chosen point of one worker's integration: `python -c
CRASH_AT WORKER_ID POINT ARGS…` (the launcher's own code, one function wrapped)."""


def _reply_counts() -> dict[str, list[int]]:
    counts = {}
    for wid in WORKERS:
        data = yaml.safe_load((ROOT / "ai-workers" / "replays" / f"{wid}.yaml").read_text(encoding="utf-8"))
        counts[wid] = [len(attempt["replies"]) for attempt in data["attempts"]]
    return counts


REPLIES = _reply_counts()
TOTAL_MODEL_CALLS = sum(sum(counts) for counts in REPLIES.values())
"""68: every recorded reply of every attempt of an uninterrupted demo run."""


def replies_of(worker_id: str, attempt: int) -> int:
    """Model calls attempt number `attempt` makes (the replay provider repeats its last attempt)."""
    counts = REPLIES[worker_id]
    return counts[min(attempt, len(counts)) - 1]


# ── the launcher's environment and command lines ────────────────────────────────────────────


def launcher_env(redis_url: str | None = None, *, delay_s: float = REPLY_DELAY_S, **overrides: str) -> dict[str, str]:
    """A clean environment: no outside Redis/mem0/Chroma, fast leases, a monitor that never pauses.

    Retrospectives are switched off with `ENABLED=false`: `WORKFORCE__RETROSPECTIVES__BACKEND=off`
    is read by YAML as the boolean false and rejected (see the report on config._apply_overrides)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WORKFORCE__", "PYTEST_"))
           and k not in ("REDIS_URL", "MEM0_API_URL", "CHROMA_HOST", "CHROMA_PORT")}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "MEM0_TELEMETRY": "False",
        "TOKENIZERS_PARALLELISM": "false",
        "WORKFORCE__KNOWLEDGE__ENABLED": "false",
        "WORKFORCE__RETROSPECTIVES__ENABLED": "false",
        "WORKFORCE__MONITOR__CPU_PERCENT": "1000",
        "WORKFORCE__MONITOR__MEMORY_PERCENT": "1000",
        "WORKFORCE__MONITOR__DISK_PERCENT": "1000",
        "WORKFORCE__MONITOR__INTERVAL_S": "1",
        "WORKFORCE__STATE__LEASE_S": "1",
        "WORKFORCE__STATE__RECONNECT_INTERVAL_S": "0.5",
        "WORKFORCE__PROVIDERS__REPLAY__REPLAY_DELAY_S": str(delay_s),
    })
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def run_args(run_id: str) -> list[str]:
    return ["--all", "--provider", "replay", "--workers-dir", "ai-workers/workers", "--target", TARGET,
            "--run-id", run_id]


def resume_args(run_id: str) -> list[str]:
    # --provider again: the run record does not keep it (see the report), and without it the
    # demo's workers route to openai and the credentials check refuses to start.
    return ["--resume", run_id, "--provider", "replay"]


# ── processes ───────────────────────────────────────────────────────────────────────────────


def alive(process: psutil.Process) -> bool:
    """Still running and not a zombie (psutil also guards against a recycled pid)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {process.name()}: {' '.join(process.cmdline())[:160]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def wait_gone(processes: list[psutil.Process], within_s: float) -> list[str]:
    """Those of `processes` still alive after `within_s` seconds (described)."""
    deadline = time.monotonic() + within_s
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [describe(p) for p in processes if alive(p)]


def name_of(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:
        return ""


def is_redis(process: psutil.Process) -> bool:
    try:
        return "redis-server" in process.name() or "redis-server" in " ".join(process.cmdline()[:1])
    except psutil.Error:
        return False


def processes_under(folder: Path) -> list[psutil.Process]:
    """Live processes (other than this one) whose working directory or command line is in `folder`."""
    found, root = [], str(folder.resolve())
    for process in psutil.process_iter():
        if process.pid == os.getpid() or not alive(process):
            continue
        try:
            cwd = process.cwd()
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if cwd == root or cwd.startswith(root + os.sep) or root + os.sep in command:
            found.append(process)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server the test owns: append-only file in `data_dir`, on a TCP port or a unix socket."""

    def __init__(self, data_dir: Path, *, unix: bool = False) -> None:
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket = socket_path_for(data_dir) if unix else None
        self.port = 0 if unix else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}" if self.socket else f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return make_client(self.url, socket_timeout=5.0)

    def start(self) -> OwnRedis:
        arguments = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                     "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no"]
        if self.socket:
            arguments += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        with open(self.data_dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(arguments, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                log_text = (self.data_dir / "redis.log").read_text(errors="replace")[-600:]
                pytest.fail(f"redis-server exited with {self.process.returncode}: {log_text}")
            client = make_client(self.url, socket_timeout=1.0)
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer PING within 15 s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (the AOF has every acknowledged write)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly (fsyncs the AOF)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Finished:
    name: str
    returncode: int
    stdout: str
    stderr: str

    def tail(self) -> str:
        return f"{self.name} exited {self.returncode}\n--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-3000:]}"


class Harness:
    """One test's workspace, launcher subprocesses and Redis servers; cleans all of them up.

    On exit: launchers still running are killed (by pid, with their descendants), own
    redis-servers stopped, a private redis-server left in the workspace stopped (only one whose
    data dir is in this workspace), and any process still working inside the tmp dir is
    reported as a leftover (and killed)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ws = base / "ws"
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.launchers: dict[str, subprocess.Popen[bytes]] = {}
        self.servers: list[OwnRedis] = []
        self.names_at_kill: list[str] = []
        """Process names of the last SIGKILLed launcher's descendants, taken just before the kill."""

    # -- the workspace ----------------------------------------------------------------------
    def workspace(self, slow: dict[str, float] | None = None) -> Path:
        """The demo workforce copied into the workspace; `slow` prepends `sleep N && ` to the
        first TEST_PROCESS command of those workers."""
        (self.ws / "ai-workers").mkdir(parents=True)
        for folder in ("workers", "replays"):
            shutil.copytree(ROOT / "ai-workers" / folder, self.ws / "ai-workers" / folder)
        for wid, seconds in (slow or {}).items():
            slow_down_first_test(self.ws / "ai-workers" / "workers", wid, seconds)
        return self.ws

    @property
    def private_redis_dir(self) -> Path:
        return self.ws / ".workforce" / "redis"

    @property
    def journal(self) -> Path:
        return self.ws / ".workforce" / "state-journal.jsonl"

    @property
    def target(self) -> Path:
        return self.ws / TARGET

    def private_client(self) -> redis.Redis:
        """A client on the launcher's private redis-server (which may not be up yet)."""
        return make_client(f"unix://{socket_path_for(self.private_redis_dir.resolve())}", socket_timeout=5.0)

    @contextlib.contextmanager
    def reopened_private_redis(self) -> Iterator[redis.Redis]:
        """The private server's data after the launcher stopped it: started again on its AOF."""
        with PrivateRedis(self.private_redis_dir) as server:
            client = make_client(server.url, socket_timeout=5.0)
            try:
                yield client
            finally:
                client.close()

    def own_redis(self, name: str, *, unix: bool = False) -> OwnRedis:
        server = OwnRedis(self.base / name, unix=unix)
        self.servers.append(server)
        return server.start()

    # -- launchers --------------------------------------------------------------------------
    def start(
        self, args: list[str], env: dict[str, str], name: str, *, crash: tuple[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """`launch_workforce.py ARGS`; with `crash=(worker, point)` the same launcher, which SIGKILLs
        itself when that worker reaches `point` (see CRASH_AT)."""
        program = ["-c", CRASH_AT, *crash] if crash else [str(LAUNCH)]
        with open(self.logs / f"{name}.out", "wb") as out, open(self.logs / f"{name}.err", "wb") as err:
            process = subprocess.Popen([PYTHON, *program, *args], cwd=self.ws, env=env,
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.launchers[name] = process
        return process

    def finish(self, name: str, timeout_s: float = 150) -> Finished:
        process = self.launchers[name]
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_tree(process)
            pytest.fail(f"{name} did not finish within {timeout_s:.0f} s:\n{self.result(name).tail()}")
        return self.result(name)

    def run(
        self, args: list[str], env: dict[str, str], name: str, *, crash: tuple[str, str] | None = None,
        timeout_s: float = 150,
    ) -> Finished:
        self.start(args, env, name, crash=crash)
        return self.finish(name, timeout_s)

    def result(self, name: str) -> Finished:
        process = self.launchers[name]
        out, err = ((self.logs / f"{name}.{suffix}").read_text(encoding="utf-8", errors="replace")
                    for suffix in ("out", "err"))
        return Finished(name, -1 if process.returncode is None else process.returncode, out, err)

    def sigkill(self, name: str) -> list[psutil.Process]:
        """SIGKILL the launcher; returns its descendants as they were just before the kill."""
        process = self.launchers[name]
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.names_at_kill = [name_of(child) for child in descendants]
        assert process.poll() is None, f"{name} had already exited:\n{self.result(name).tail()}"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        return descendants

    def _kill_tree(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(process.pid).children(recursive=True):
                if not is_redis(child):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
        if process.poll() is None:
            process.kill()
            process.wait(10)

    # -- cleanup ----------------------------------------------------------------------------
    def __enter__(self) -> Harness:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        for process in self.launchers.values():
            if process.poll() is None:
                self._kill_tree(process)
        for server in self.servers:
            server.stop()
        stop_private_redis(self.private_redis_dir)
        leftovers = processes_under(self.base)
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        if leftovers and exc_type is None:
            raise AssertionError(f"processes left behind in {self.base}: {[describe(p) for p in leftovers]}")


def stop_private_redis(data_dir: Path) -> None:
    """Stop a launcher's private redis-server by its pid file, if it is one for `data_dir`.

    (`PrivateRedis(data_dir).stop()` does nothing here: a new PrivateRedis manages no process
    until start() adopts one.)"""
    try:
        pid = int((data_dir / "redis.pid").read_text().strip())
        process = psutil.Process(pid)
        command = " ".join(process.cmdline())
    except (OSError, ValueError, psutil.Error):
        return
    if "redis-server" not in process.name() + command or str(data_dir.resolve()) not in command:
        return
    with contextlib.suppress(psutil.Error):
        process.terminate()
        if wait_gone([process], 10):
            process.kill()


def slow_down_first_test(workers_dir: Path, worker_id: str, seconds: float) -> None:
    """Prepend `sleep N && ` to the first command of the worker's TEST_PROCESS block."""
    path = next(workers_dir.glob(f"{worker_id}_*.md"))
    lines = path.read_text(encoding="utf-8").split("\n")
    section = next(i for i, line in enumerate(lines) if line.startswith("## ") and "TEST_PROCESS" in line)
    fence = next(i for i in range(section, len(lines)) if lines[i].startswith("```"))
    first = next(i for i in range(fence + 1, len(lines)) if lines[i].strip() and not lines[i].startswith("#"))
    lines[first] = f"sleep {seconds:g} && {lines[first]}"
    path.write_text("\n".join(lines), encoding="utf-8")
    loaded = {i.worker_id: i for i in load_workers(workers_dir).instructions}
    assert loaded[worker_id].test_commands[0].command.startswith(f"sleep {seconds:g} && ")


# ── reading the run ─────────────────────────────────────────────────────────────────────────


def wait_for(what: str, probe: Callable[[], T], process: subprocess.Popen[bytes], timeout_s: float = 90) -> T:
    """Poll `probe` until it returns something truthy; fail if the launcher exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except (redis.RedisError, OSError, psutil.Error):
            value = None
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the launcher exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def worker_key(run_id: str, worker_id: str) -> str:
    return f"{PREFIX}:execution:{run_id}:worker:{worker_id}"


def events_key(run_id: str) -> str:
    return f"{PREFIX}:execution:{run_id}:events"


def statuses(client: redis.Redis, run_id: str) -> dict[str, str | None]:
    pipe = client.pipeline(transaction=False)
    for wid in WORKERS:
        pipe.hget(worker_key(run_id, wid), "status")
    return dict(zip(WORKERS, pipe.execute(), strict=True))


def passed_workers(client: redis.Redis, run_id: str) -> set[str]:
    return {wid for wid, status in statuses(client, run_id).items() if status == "passed"}


def events(client: redis.Redis, run_id: str, after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(stream id, decoded event) in order; only those after the stream id `after` when given."""
    start = f"({after}" if after else "-"
    return [(entry_id, {k: json.loads(v) for k, v in fields.items()})
            for entry_id, fields in client.xrange(events_key(run_id), min=start, max="+")]


def last_event_id(client: redis.Redis, run_id: str) -> str:
    newest = client.xrevrange(events_key(run_id), count=1)
    return newest[0][0] if newest else "0-0"


def distinct(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events at-least-once (one in flight when Redis dropped may be stored twice): every event
    carries the `ts` it was stamped with, so a duplicate is an identical event."""
    seen, unique = set(), []
    for event in found:
        key = json.dumps(event, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


def rolled_forward(found: list[dict[str, Any]]) -> set[str]:
    return {e["worker_id"] for e in found if e.get("event") == "rolled_forward"}


def integrations(found: list[dict[str, Any]]) -> Counter[str]:
    """Per worker: `integrated` plus `rolled_forward` events."""
    return Counter(e["worker_id"] for e in found if e.get("event") in ("integrated", "rolled_forward"))


# ── what a finished run must look like ──────────────────────────────────────────────────────


def assert_all_passed(client: redis.Redis, run_id: str, *, dedupe: bool = False) -> list[dict[str, Any]]:
    """Every worker passed in Redis and the run finished; returns the run's events."""
    assert statuses(client, run_id) == dict.fromkeys(WORKERS, "passed")
    assert client.scard(f"{PREFIX}:execution:{run_id}:status:passed") == 15
    assert client.scard(f"{PREFIX}:execution:{run_id}:status:running") == 0
    assert client.hget(f"{PREFIX}:execution:{run_id}", "status") == "finished"
    found = [event for _, event in events(client, run_id)]
    return distinct(found) if dedupe else found


def assert_all_passed_once(client: redis.Redis, run_id: str, *, dedupe: bool = False) -> list[dict[str, Any]]:
    """Every worker passed in Redis, with exactly one integration; returns the run's events."""
    found = assert_all_passed(client, run_id, dedupe=dedupe)
    assert integrations(found) == Counter(dict.fromkeys(WORKERS, 1))
    return found


def assert_no_rework(after: list[dict[str, Any]], passed_before: set[str]) -> list[dict[str, Any]]:
    """Nothing that had passed ran again: no attempt, no integration, and exactly as many model
    calls as the attempts started after the resume record. Returns those attempts."""
    attempts = [e for e in after if e.get("event") == "attempt"]
    assert not {e["worker_id"] for e in attempts} & passed_before
    assert not set(integrations(after)) & passed_before
    expected_calls = sum(replies_of(e["worker_id"], int(e["number"])) for e in attempts)
    assert sum(1 for e in after if e.get("event") == "model_call") == expected_calls
    return attempts


def assert_results_complete(ws: Path, run_id: str) -> None:
    results = ws / "ai-workers" / "results"
    assert sorted(p.stem for p in (results / "workers").glob("*.json")) == WORKERS
    for wid in WORKERS:
        data = json.loads((results / "workers" / f"{wid}.json").read_text(encoding="utf-8"))
        assert (data["worker_id"], data["run_id"], data["status"]) == (wid, run_id, "passed")
        assert data["deliverables_created"], wid
        for path in data["deliverables_created"]:
            assert (ws / TARGET / path).is_file(), f"{wid}: {path} is not in the target"
    summary = json.loads((results / "execution_summary.json").read_text(encoding="utf-8"))
    assert (summary["run_id"], summary["status"]) == (run_id, "finished")
    assert summary["passed"] == summary["total"] == 15


def assert_target_tests_pass(target: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHON"))}
    env.update(PYTHONPATH=str(target), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def journal_events(journal: Path) -> list[dict[str, Any]]:
    """The events the state journal recorded, in order."""
    found = []
    with open(journal, encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("op") == "event":
                    found.append(entry["event"])
    return found


# ── the tests ───────────────────────────────────────────────────────────────────────────────




def kill_and_resume(
    harness: Harness, run_id: str, env: dict[str, str], client: redis.Redis,
    at: str, ready: Callable[[subprocess.Popen[bytes]], object],
) -> tuple[list[psutil.Process], set[str], dict[str, Any]]:
    """Run, SIGKILL once `ready(process)` is truthy, resume to exit 0.

    Returns the killed launcher's descendants, the workers passed at the kill and what the
    kill looked like (statuses, the stream id the resume starts after)."""
    process = harness.start(run_args(run_id), env, "first")
    wait_for(at, lambda: ready(process), process)
    descendants = harness.sigkill("first")
    at_kill = {"statuses": statuses(client, run_id), "resume_after": last_event_id(client, run_id),
               "integration": {wid: client.hget(worker_key(run_id, wid), "integration") for wid in WORKERS}}
    passed_before = passed_workers(client, run_id)
    # The sandboxed test commands die with the launcher (PR_SET_PDEATHSIG, bwrap --die-with-parent);
    # only the private redis-server is meant to outlive it, for the next launcher to adopt.
    left = wait_gone([p for p in descendants if not is_redis(p)], within_s=2.0)
    assert not left, f"children of the killed launcher still alive: {left}"
    resumed = harness.run(resume_args(run_id), env, "resume")
    assert resumed.returncode == 0, resumed.tail()
    left = wait_gone(descendants, within_s=5.0)
    assert not left, f"children of the killed launcher alive after the resumed run: {left}"
    return descendants, passed_before, at_kill


@pytest.mark.slow
def test_sigkill_mid_lane_then_resume(harness: Harness) -> None:
    """Killed while WORKER_003, in the middle of the WORKER_002→003→004 lane, runs (private Redis).

    The kill waits until the other lanes of wave 1 (WORKER_001, WORKER_005) have passed: they
    finish at the same moment as WORKER_002, and a kill between one's `integrated` event and its
    `finish` is the window test_crash_after_integrated_event_before_finish covers."""
    harness.workspace()
    run_id = "kill-mid-lane"
    client = harness.private_client()

    def mid_lane(_: object) -> bool:
        now = statuses(client, run_id)
        return now["WORKER_003"] == "running" and now["WORKER_001"] == now["WORKER_005"] == "passed"

    descendants, passed_before, at_kill = kill_and_resume(
        harness, run_id, launcher_env(), client, "WORKER_003 running", mid_lane,
    )
    client.close()
    assert at_kill["statuses"]["WORKER_002"] == "passed"
    assert at_kill["statuses"]["WORKER_003"] == "running"
    assert at_kill["statuses"]["WORKER_004"] == "pending"
    assert any(is_redis(p) for p in descendants), "the launcher did not start its private redis-server"

    with harness.reopened_private_redis() as client:
        assert_all_passed_once(client, run_id)
        after = [event for _, event in events(client, run_id, after=at_kill["resume_after"])]
    attempts = assert_no_rework(after, passed_before)
    rerun = {e["worker_id"] for e in attempts}
    assert {"WORKER_003", "WORKER_004"} <= rerun
    assert rerun | rolled_forward(after) == set(WORKERS) - passed_before
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)


@pytest.mark.slow
def test_sigkill_during_validation_then_resume(harness: Harness) -> None:
    """Killed while WORKER_004's TEST_PROCESS runs (its first command made `sleep 4 && …`); own
    Redis on TCP. WORKER_004 ends the normalize lane, so nothing else is running then."""
    harness.workspace(slow={"WORKER_004": 4})
    server = harness.own_redis("redis-tcp")
    run_id = "kill-in-validation"
    client = server.client()
    workdir = harness.ws / "validation_build" / run_id / "WORKER_004"

    def validating(process: subprocess.Popen[bytes]) -> bool:
        written = workdir / "textkit" / "normalize.py"  # seeded from the target, then rewritten
        if not (written.is_file() and "def slugify" in written.read_text(encoding="utf-8")):
            return False
        if client.hget(worker_key(run_id, "WORKER_004"), "status") != "running":
            return False
        children = psutil.Process(process.pid).children(recursive=True)
        return any(name_of(p) == "sleep" and _cwd(p) == str(workdir) for p in children)

    descendants, passed_before, at_kill = kill_and_resume(
        harness, run_id, launcher_env(server.url), client, "WORKER_004 in validation", validating,
    )
    assert at_kill["statuses"]["WORKER_004"] == "running"
    assert passed_before == set(WAVE_1) - {"WORKER_004"}
    assert "sleep" in harness.names_at_kill, "no test command was running at the kill"
    assert json.loads(at_kill["integration"]["WORKER_004"]) == {}, "killed after validation, not during it"

    assert_all_passed_once(client, run_id)
    after = [event for _, event in events(client, run_id, after=at_kill["resume_after"])]
    client.close()
    attempts = assert_no_rework(after, passed_before)
    assert [e["outcome"] for e in attempts if e["worker_id"] == "WORKER_004"] == ["passed"]
    assert {e["worker_id"] for e in attempts} | rolled_forward(after) == set(WORKERS) - passed_before
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)


@pytest.mark.slow
def test_sigkill_between_waves_then_resume(harness: Harness) -> None:
    """Killed right after wave 1 finished (private Redis)."""
    harness.workspace()
    run_id = "kill-between-waves"
    client = harness.private_client()
    seen = {"after": None}

    def wave_1_finished(_: object) -> bool:
        for entry_id, event in events(client, run_id, after=seen["after"]):
            seen["after"] = entry_id
            if event.get("event") == "wave_finished" and event.get("priority") == 1:
                return True
        return False

    _, passed_before, at_kill = kill_and_resume(
        harness, run_id, launcher_env(), client, "wave 1 to finish", wave_1_finished,
    )
    client.close()
    assert passed_before == set(WAVE_1), at_kill["statuses"]

    with harness.reopened_private_redis() as client:
        assert_all_passed_once(client, run_id)
        after = [event for _, event in events(client, run_id, after=at_kill["resume_after"])]
    attempts = assert_no_rework(after, passed_before)
    assert {e["worker_id"] for e in attempts} | rolled_forward(after) == set(WORKERS) - set(WAVE_1)
    started = [e["priority"] for e in after if e.get("event") == "wave_started"]
    assert started == [1, 2, 3]  # wave 1 is walked again, but nothing in it runs
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)


def crash_and_resume(harness: Harness, run_id: str, worker: str, point: str) -> tuple[set[str], str, dict[str, str]]:
    """A launcher that SIGKILLs itself at `point` of `worker`, then `--resume` to exit 0.

    Returns the workers passed at the crash, the stream id the resume starts after and the
    worker's state hash at the crash."""
    env = launcher_env(delay_s=0.05)
    crashed = harness.run(run_args(run_id), env, "first", crash=(worker, point))
    assert crashed.returncode == -signal.SIGKILL, crashed.tail()
    left = wait_gone([p for p in processes_under(harness.ws) if not is_redis(p)], within_s=2.0)
    assert not left, f"children of the crashed launcher still alive: {left}"
    client = harness.private_client()
    passed_before = passed_workers(client, run_id)
    resume_after = last_event_id(client, run_id)
    state = client.hgetall(worker_key(run_id, worker))
    client.close()
    resumed = harness.run(resume_args(run_id), env, "resume")
    assert resumed.returncode == 0, resumed.tail()
    assert not [describe(p) for p in processes_under(harness.ws)], "processes left behind by the resumed run"
    return passed_before, resume_after, state


@pytest.mark.slow
def test_crash_before_merge_rolls_forward(harness: Harness) -> None:
    """Crash after WORKER_003's merge manifest was recorded, before any file was merged: the
    resume merges it from the work dir (roll forward) without a model call, and WORKER_004
    builds on it."""
    harness.workspace()
    run_id = "crash-before-merge"
    passed_before, resume_after, state = crash_and_resume(harness, run_id, "WORKER_003", "before-merge")
    assert state["status"] == "running" and json.loads(state["integration"])
    assert "WORKER_003" not in passed_before and "WORKER_002" in passed_before

    with harness.reopened_private_redis() as client:
        found = assert_all_passed_once(client, run_id)
        after = [event for _, event in events(client, run_id, after=resume_after)]
    assert not [e for e in found if e.get("event") == "integrated" and e["worker_id"] == "WORKER_003"]
    assert rolled_forward(after) == {"WORKER_003"}
    attempts = assert_no_rework(after, passed_before)
    assert {e["worker_id"] for e in attempts} == set(WORKERS) - passed_before - {"WORKER_003"}
    assert "def strip_accents" in (harness.target / "textkit" / "normalize.py").read_text(encoding="utf-8")
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)


@pytest.mark.slow
def test_crash_after_integrated_event_before_finish(harness: Harness) -> None:
    """Crash after WORKER_005 merged its files and its `integrated` event was stored, before its
    state became passed: the resume must account for that integration once."""
    harness.workspace()
    run_id = "crash-before-finish"
    passed_before, resume_after, state = crash_and_resume(harness, run_id, "WORKER_005", "before-finish")
    assert state["status"] == "running" and json.loads(state["integration"])

    with harness.reopened_private_redis() as client:
        found = assert_all_passed(client, run_id)
        after = [event for _, event in events(client, run_id, after=resume_after)]
    attempts = assert_no_rework(after, passed_before)
    assert {e["worker_id"] for e in attempts} == set(WORKERS) - passed_before - {"WORKER_005"}
    before = found[: len(found) - len(after)]  # the stream up to the crash
    assert "WORKER_005" in integrations(before), "the crash came before WORKER_005's `integrated` event"
    assert_results_complete(harness.ws, run_id)
    assert_target_tests_pass(harness.target)
    counted = integrations(found)
    assert {w: n for w, n in counted.items() if w != "WORKER_005"} == dict.fromkeys(set(WORKERS) - {"WORKER_005"}, 1)
    assert counted["WORKER_005"] == 1, "the resume counted WORKER_005's merge again"


def _cwd(process: psutil.Process) -> str:
    try:
        return process.cwd()
    except psutil.Error:
        return ""
