"""A throwaway redis-server: started on a free port, stopped by PID, started again."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from devstack.redis_server import RedisServer, redis_answers, redis_server_binary
from devstack.supervisor import session_pids


def test_restarted_on_the_same_port_with_its_append_only_file(tmp_path: Path) -> None:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    with RedisServer(binary, tmp_path / "redis", aof=True) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        client.set("kept", "yes")
        first = server.process
        server.stop()
        assert first is not None and session_pids(first.pid) == []
        assert not redis_answers(server.url)
        server.start()
        assert client.get("kept") == b"yes"
        client.close()
    assert server.process is not None and not server.process.alive()
    assert (tmp_path / "redis" / "redis.log").read_text().count("Ready to accept") == 2
