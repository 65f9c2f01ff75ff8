"""The real `cairn` command with what users type: `@file` attachments in `cairn -p`, and
`--model` choosing the agent's model (kept for the next `cairn`)."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.servers import model_env, script
from support.terminal import terminal


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def sent_to_model(fake_model: FakeModelServer) -> str:
    """What the last request gave the model as the user's turn."""
    messages = fake_model.requests[-1].body["messages"]
    return str([m for m in messages if m["role"] == "user"][-1]["content"])


def test_an_at_mention_attaches_the_file_the_model_then_sees(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    (repo / ".env").write_text("API_KEY=sk-live-abcdef0123456789abcdef0123456789\n")
    fake_model.set_script(script({"text": "It returns 1."}))
    done = cairn(
        repo,
        data_dir,
        "-p",
        "what does @app.py return? also @.env and @../../etc/passwd",
        env=model_env(fake_model),
    )
    assert done.returncode == 0, done.stderr
    told = sent_to_model(fake_model)
    assert told.startswith("what does @app.py return?")
    assert '<attached-file path="app.py">\n1\tdef total(items):' in told
    assert "sk-live" not in told and "root:" not in told
    assert "cairn: Attached app.py (2 lines)" in done.stderr
    refused = [line for line in done.stderr.splitlines() if "not attached" in line]
    assert [line.split(" not attached")[0] for line in refused] == [
        "cairn: @.env",
        "cairn: @../../etc/passwd",
    ]
    assert not any(m.get("tool_calls") for m in fake_model.requests[-1].body["messages"])
    assert json.dumps(fake_model.requests[-1].body).count("def total") == 1


def test_model_flag_chooses_the_agents_model_and_the_next_cairn_keeps_it(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "one"}, {"text": "two"}))
    env = model_env(fake_model)
    first = cairn(repo, data_dir, "--model", "anthropic/claude-haiku-4-5", "-p", "hi", env=env)
    assert first.returncode == 0, first.stderr
    assert fake_model.requests[-1].body["model"] == "claude-haiku-4-5"
    second = cairn(repo, data_dir, "-p", "and again", env=env)  # no --model: kept
    assert second.returncode == 0, second.stderr
    assert fake_model.requests[-1].body["model"] == "claude-haiku-4-5"
    shown = cairn(repo, data_dir, "-p", "/model", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Model: anthropic/claude-haiku-4-5 (chosen for this agent)")
    back = cairn(repo, data_dir, "-p", "/model default", env=env)
    assert back.stdout.startswith("Model: the server's default"), back.stderr


def test_an_unknown_model_is_refused_before_anything_runs(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "never"}))
    done = cairn(repo, data_dir, "--model", "gpt-nine", "-p", "hi", env=model_env(fake_model))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cairn: Unknown model 'gpt-nine'")
    assert "did you mean openai/gpt-nine or anthropic/gpt-nine?" in line
    assert "its default is openai/gpt-4o-mini" in line
    assert fake_model.requests == []


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_request_on_the_command_line_opens_the_tui_with_it_sent(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "It adds nothing yet."}))
    request = "what does @app.py return?"
    command = f"{shlex.quote(sys.executable)} -m cairn_client.cli {shlex.quote(request)}"
    env = {**model_env(fake_model), "CAIRN_DATA_DIR": str(data_dir)}
    with terminal(command, cwd=repo, env=env, deadline_s=60.0) as term:
        term.wait_for("the answer", lambda screen: "It adds nothing yet." in screen)
        screen = term.screen()
        assert request in screen and "Attached app.py (2 lines)" in screen
        term.send("C-q")
    told = sent_to_model(fake_model)
    assert told.startswith(request) and '<attached-file path="app.py">' in told


def test_a_subcommand_name_still_runs_the_subcommand(repo: Path, data_dir: Path) -> None:
    listed = cairn(repo, data_dir, "conversations", "--help")
    assert listed.returncode == 0 and "Usage: cairn conversations" in listed.stdout
    both = cairn(repo, data_dir, "-p", "one", "two")
    assert both.returncode == 2
    assert "use either -p REQUEST or a REQUEST for the TUI" in both.stderr
