"""The TUI on the shared local server, in a real terminal: when that server dies while `cairn` is
open, the app starts it again on its reconnect, says so once, and the conversation goes on."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

import pytest
from cairn_client.local_server import process_running, read_state
from cairn_fakes.runner import FakeModelServer
from support.cli import TEST_IDLE_EXIT_S
from support.servers import model_env, script
from support.terminal import terminal
from support.waiting import wait_until

DEADLINE_S = 90.0
TUI_READY = "Message cairn"  # the prompt's placeholder
COMMAND = f"{shlex.quote(sys.executable)} -m cairn_client.cli"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_a_local_server_killed_under_the_tui_is_restarted_and_said_once(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "Answered by the new server."}))
    data_dir = tmp_path / "data"
    env = {
        **model_env(fake_model),
        "CAIRN_DATA_DIR": str(data_dir),
        "CAIRN_IDLE_EXIT_S": TEST_IDLE_EXIT_S,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    with terminal(COMMAND, cwd=repo, env=env, deadline_s=DEADLINE_S) as term:
        term.wait_for("the TUI", lambda s: TUI_READY in s and "connected" in s)
        first = read_state(data_dir)
        assert first is not None
        os.kill(first.pid, signal.SIGKILL)
        wait_until(lambda: not process_running(first.pid))

        said = f"the local server (pid {first.pid}) had stopped; started a new one"
        term.wait_for("the restart notice", lambda s: said in " ".join(s.split()))
        term.send("hello", "Enter")
        screen = term.wait_for("the answer", lambda s: "Answered by the new server." in s)

    second = read_state(data_dir)
    assert second is not None and second.pid != first.pid
    assert " ".join(screen.split()).count(said) <= 1
