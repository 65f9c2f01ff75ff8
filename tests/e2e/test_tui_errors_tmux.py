"""The TUI's errors in a real terminal: a server never reached, a model the server cannot use,
a model the provider does not have. Each ends the real `cairn` with one line naming the problem
and the exit code of README's table."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from support.servers import TEST_TOKEN, cairn_server, model_env, sqlite_url
from support.terminal import terminal

DEADLINE_S = 60.0
EXIT_MARKER = "cairn-exit-status="
COMMAND = f"{shlex.quote(sys.executable)} -m cairn_client.cli; echo {EXIT_MARKER}$?"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_a_server_never_reached_ends_the_tui_with_one_line_and_2(
    repo: Path, tmp_path: Path
) -> None:
    env = {
        "CAIRN_SERVER_URL": "http://127.0.0.1:9",
        "CAIRN_TOKEN": TEST_TOKEN,
        "CAIRN_DATA_DIR": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    with terminal(COMMAND, cwd=repo, env=env, deadline_s=DEADLINE_S) as term:
        screen = term.wait_for("cairn to exit", lambda s: EXIT_MARKER in s)
    assert f"{EXIT_MARKER}2" in screen, screen
    assert "cairn: cannot reach the server at http://127.0.0.1:9: connection refused" in screen


def test_a_model_the_server_cannot_use_is_said_as_the_tui_opens(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model, env={"CAIRN_MODEL": "nosuch/model"}) as up:
        env = {
            "CAIRN_SERVER_URL": up.url,
            "CAIRN_TOKEN": TEST_TOKEN,
            "CAIRN_DATA_DIR": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        with terminal(COMMAND, cwd=repo, env=env, deadline_s=DEADLINE_S) as term:
            term.wait_for("the setup screen", lambda s: "Unknown model 'nosuch/model'" in s)
            term.send("q")
            screen = term.wait_for("cairn to exit", lambda s: EXIT_MARKER in s)
    assert f"{EXIT_MARKER}2" in screen, screen
    assert "cairn: Unknown model 'nosuch/model': a model must be written as" in screen
    assert fake_model.requests == []


def test_a_model_the_provider_does_not_have_is_refused_as_the_tui_opens_with_3(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    env = {
        **model_env(fake_model),
        "CAIRN_MODEL": "openai/gpt-nonexistent",
        "CAIRN_DATA_DIR": str(tmp_path / "data"),  # the local server, started by this cairn
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    with terminal(COMMAND, cwd=repo, env=env, deadline_s=DEADLINE_S) as term:
        term.wait_for("the setup screen", lambda s: "No usable model" in s and "it lists" in s)
        term.send("q")
        screen = term.wait_for("cairn to exit", lambda s: EXIT_MARKER in s)
    assert f"{EXIT_MARKER}3" in screen, screen
    [said] = [line for line in screen.splitlines() if line.startswith("cairn: ")]
    assert said.startswith(f"cairn: OpenAI at {fake_model.openai_base_url} has no model"), screen
    assert "it lists openai/gpt-4o" in said
    assert fake_model.requests == []
