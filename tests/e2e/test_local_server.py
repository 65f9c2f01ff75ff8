"""The local server that stays up: the real `cairn` in subprocesses sharing one background
server per data folder, restarting it after a crash or an upgrade, stopping it when asked
or unused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cairn_client.local_server import STATE_FILE, LocalServer, process_running, read_state
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn, cairn_env, start_cairn
from support.servers import model_env, script
from support.waiting import scaled, until, wait_until
from support.wire import connected

RESTARTED = "had stopped; started a new one"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def server_pid(data_dir: Path) -> int:
    state = read_state(data_dir)
    assert state is not None, f"no {STATE_FILE} in {data_dir}"
    return state.pid


def write_old_state(data_dir: Path, pid: int, port: int) -> None:
    """A state file as a cairn of version 0.0.1 would have left it."""
    state = {
        "pid": pid,
        "port": port,
        "token": "old",
        "version": "0.0.1",
        "data_dir": str(data_dir),
        "started_at": 0.0,
        "settings": {},
    }
    (data_dir / STATE_FILE).write_text(json.dumps(state))


def local_servers(data_dir: Path) -> list[int]:
    """The pids of the `cairn-server` processes started for `data_dir`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(data_dir / STATE_FILE).encode() in argv and process_running(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def test_a_second_cairn_reuses_the_server_the_first_started(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "First answer."}, {"text": "Second answer."}))
    first = cairn(repo, data_dir, "-p", "hello", env=model_env(fake_model))
    assert first.returncode == 0, first.stderr
    assert "First answer." in first.stdout
    pid = server_pid(data_dir)
    assert process_running(pid)  # it outlived the `cairn` that started it
    assert (data_dir / STATE_FILE).stat().st_mode & 0o777 == 0o600

    second = cairn(repo, data_dir, "-p", "again", env=model_env(fake_model))
    assert second.returncode == 0, second.stderr
    assert "Second answer." in second.stdout
    assert server_pid(data_dir) == pid
    assert local_servers(data_dir) == [pid]
    assert "local server" not in second.stderr

    listed = cairn(repo, data_dir, "runs", "list", env=model_env(fake_model))
    assert listed.returncode == 0, listed.stderr
    assert "run_" in listed.stdout  # the latest conversation's run, on the same server
    assert server_pid(data_dir) == pid


def test_two_cairn_started_at_once_share_one_server(repo: Path, data_dir: Path) -> None:
    both = [start_cairn(repo, data_dir, "runs", "list") for _ in range(2)]
    for process in both:
        _, err = process.communicate(timeout=120)
        assert "no conversation yet" in err  # each reached the server
    assert local_servers(data_dir) == [server_pid(data_dir)]


def test_status_and_stop(repo: Path, data_dir: Path) -> None:
    quiet = cairn(repo, data_dir, "server", "status")
    assert quiet.returncode == 0, quiet.stderr
    assert "not running" in quiet.stdout

    cairn(repo, data_dir, "runs", "list")
    pid = server_pid(data_dir)
    status = cairn(repo, data_dir, "server", "status")
    assert f"running (pid {pid})" in status.stdout
    for field in ("address:      http://127.0.0.1:", "version:", "uptime:", str(data_dir)):
        assert field in status.stdout

    stopped = cairn(repo, data_dir, "server", "stop")
    assert stopped.stdout.strip() == f"stopped the local server (pid {pid})"
    assert not process_running(pid)
    assert "not running" in cairn(repo, data_dir, "server", "status").stdout
    assert cairn(repo, data_dir, "server", "stop").stdout.strip() == (
        "the local server is not running"
    )
    # The server's own commands are still there.
    assert "create-token" in cairn(repo, data_dir, "server", "--help").stdout


def test_a_killed_server_is_restarted_and_said_once(repo: Path, data_dir: Path) -> None:
    cairn(repo, data_dir, "runs", "list")
    pid = server_pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_running(pid))

    after = cairn(repo, data_dir, "runs", "list")
    assert "no conversation yet" in after.stderr
    restarted = [line for line in after.stderr.splitlines() if "local server" in line]
    assert restarted == [f"cairn: the local server (pid {pid}) {RESTARTED}"]
    assert server_pid(data_dir) != pid

    again = cairn(repo, data_dir, "runs", "list")
    assert "local server" not in again.stderr


OLD_SERVER = """
import http.server, json, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "version": "0.0.1"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_a_server_of_another_version_is_replaced(repo: Path, data_dir: Path) -> None:
    # Started the way `cairn` starts its server: naming the state file on its command line.
    command = [sys.executable, "-c", OLD_SERVER, "--state-file", str(data_dir / STATE_FILE)]
    old = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert old.stdout is not None
        port = int(old.stdout.readline())
        data_dir.mkdir(mode=0o700)
        write_old_state(data_dir, old.pid, port)

        upgraded = cairn(repo, data_dir, "runs", "list")
        assert "no conversation yet" in upgraded.stderr  # the new server answered
        assert "the local server was version 0.0.1; restarting it as" in upgraded.stderr
        assert old.wait(timeout=10) is not None  # stopped, not left running
        new = read_state(data_dir)
        assert new is not None and new.pid != old.pid and new.version != "0.0.1"
    finally:
        old.kill()
        old.wait()


def test_an_unused_server_exits_by_itself(repo: Path, data_dir: Path) -> None:
    # One idle period, stretched with the other waits on a slow machine: the server must not
    # idle out before this `cairn` connects.
    done = cairn(repo, data_dir, "runs", "list", env={"CAIRN_IDLE_EXIT_S": str(scaled(1))})
    assert "no conversation yet" in done.stderr
    pid = server_pid(data_dir)
    wait_until(lambda: not process_running(pid), timeout=30)
    assert not (data_dir / STATE_FILE).exists()  # it said it is gone: no "restarted" later
    after = cairn(repo, data_dir, "runs", "list")
    assert "local server" not in after.stderr


async def test_a_connected_client_keeps_an_idle_server_up(repo: Path, data_dir: Path) -> None:
    # Started here and connected to at once: a `cairn` that ends first could let it idle out
    # before the test connects on a loaded machine.
    local = LocalServer(
        data_dir, environ=cairn_env(data_dir), database_url=None, idle_exit_s=scaled(1), notify=None
    )
    local.find_or_start()
    url = await local.ensure_running()
    client, _ = await connected(url, token=local.token)
    state = read_state(data_dir)
    assert state is not None
    try:
        await asyncio.sleep(scaled(3))  # three idle periods with a client connected
        assert process_running(state.pid)
    finally:
        await client.close()
    await until(None, lambda: not process_running(state.pid), timeout=30)


def test_a_process_that_took_the_servers_pid_is_left_alone(repo: Path, data_dir: Path) -> None:
    """The server died long ago and its pid went to another process: that one is not stopped."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        data_dir.mkdir(mode=0o700)
        write_old_state(data_dir, other.pid, 9)
        assert "not running" in cairn(repo, data_dir, "server", "status").stdout
        after = cairn(repo, data_dir, "runs", "list")
        assert f"(pid {other.pid}) {RESTARTED}" in after.stderr
        assert other.poll() is None  # still running
        assert server_pid(data_dir) != other.pid
    finally:
        other.kill()
        other.wait()
