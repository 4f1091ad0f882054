"""The one process supervisor: spawn with a log, wait until ready, stop by PID and session."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from devstack.supervisor import (
    NotReady,
    ProcessExited,
    Stack,
    free_port,
    log_tail,
    port_answers,
    run_command,
    session_pids,
    spawn,
)

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def test_spawn_logs_and_stop_kills_the_whole_session(tmp_path: Path) -> None:
    # a child that outlives its parent's SIGTERM, in a process group of its own (rq's
    # work-horse does that): only the session finds it
    grouped = f"{sys.executable} -c 'import os, time; os.setpgid(0, 0); time.sleep(60)'"
    script = f"echo started; {grouped} & trap '' TERM; sleep 60"
    process = spawn("sleeper", ["sh", "-c", script], ENV, tmp_path / "sleeper.log")
    process.wait_ready(lambda: len(session_pids(process.pid)) >= 3, "the children", 10)
    assert log_tail(process.log) == "started"

    process.stop(timeout=0.5)

    assert not process.alive() and session_pids(process.pid) == []


def test_wait_ready_names_the_process_that_exited(tmp_path: Path) -> None:
    process = spawn("broken", ["sh", "-c", "echo no config; exit 3"], ENV, tmp_path / "b.log")
    with pytest.raises(ProcessExited, match=r"^broken exited with code 3 at start$") as caught:
        process.wait_ready(lambda: False, "it", 10)
    assert caught.value.log == tmp_path / "b.log"
    assert log_tail(tmp_path / "b.log") == "no config"


def test_wait_ready_gives_up_after_its_timeout(tmp_path: Path) -> None:
    with Stack() as stack:
        process = stack.add(spawn("idle", ["sleep", "60"], ENV, tmp_path / "idle.log"))
        with pytest.raises(NotReady, match=r"^the thing did not come up in 0 s$"):
            process.wait_ready(lambda: False, "the thing", 0.3, interval=0.05)
    assert not process.alive()


def test_stack_stops_in_reverse_order_and_reports(tmp_path: Path) -> None:
    stack = Stack(stop_timeout=5)
    first = stack.add(spawn("first", ["sleep", "60"], ENV, tmp_path / "1.log"))
    second = stack.add(spawn("second", ["sh", "-c", "exit 4"], ENV, tmp_path / "2.log"))
    second.popen.wait(timeout=10)
    with pytest.raises(ProcessExited, match="second exited with code 4"):
        stack.check()
    lines: list[str] = []

    stack.stop_all(lines.append)

    assert lines == [
        f"second (pid {second.pid}) had exited with code 4",
        f"stopped first (pid {first.pid})",
    ]
    assert not first.alive() and stack.processes == []


def test_run_command_returns_the_exit_code_or_stops_it(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    assert run_command("true", ["sh", "-c", "echo done; exit 2"], ENV, log, 10) == 2
    assert log_tail(log) == "done"
    with pytest.raises(NotReady, match=r"^slow took over 0 s$"):
        run_command("slow", ["sleep", "60"], ENV, log, 0.2)


def test_log_tail_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "nothing.log") == ""


def test_free_port_and_port_answers() -> None:
    port = free_port()
    assert not port_answers(port)
    with socket.create_server(("127.0.0.1", port)):
        assert port_answers(port)
