"""The real `cairn -p` command: embedded server, approvals from flags, JSON output, continue."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn, start_cairn
from support.repos import APP_AFTER, APP_BEFORE
from support.servers import TEST_TOKEN, cairn_server, call, model_env, script, sqlite_url
from support.waiting import wait_until

EDIT = call("edit", path="app.py", old_string="return 1", new_string="return sum(items)")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_print_mode_answers_and_denies_edits_it_cannot_ask_about(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Reading first. ", "tool_calls": [call("read", path="app.py")]},
            {"tool_calls": [call("grep", pattern="total")]},
            {"tool_calls": [EDIT]},
            {"text": "I could not edit, so here is the fix instead."},
        )
    )
    # A repository cannot allow itself edits (the user is told its allow rule was ignored),
    # but its deny rules hold, also for a grep over the whole tree.
    (repo / ".cairn").mkdir()
    (repo / ".cairn" / "settings.toml").write_text(
        '[permissions]\nallow = ["edit(*)"]\ndeny = ["read(private)"]\n'
    )
    (repo / "private").mkdir()
    (repo / "private" / "plan.txt").write_text("total takeover on friday\n")
    done = cairn(repo, data_dir, "-p", "fix total()", env=model_env(fake_model))
    assert done.returncode == 0, done.stderr
    assert "allow rules are ignored" in done.stderr
    sent = json.dumps([r.body for r in fake_model.requests])
    assert "app.py" in sent and "takeover" not in sent and "withheld by the permission" in sent
    assert "here is the fix instead" in done.stdout
    assert "✓ Read app.py" in done.stderr or "read" in done.stderr.lower()
    assert (repo / "app.py").read_text() == APP_BEFORE
    tool_answer = fake_model.requests[-1].body["messages"][-1]["content"]
    assert "--approve" in tool_answer  # the model is told why and how it could be allowed


def test_approve_edits_lets_the_edit_land(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [EDIT]}, {"text": "Fixed."}))
    done = cairn(repo, data_dir, "-p", "fix it", "--approve", "edits", env=model_env(fake_model))
    assert done.returncode == 0, done.stderr
    assert (repo / "app.py").read_text() == APP_AFTER


def test_json_lines_and_continue(repo: Path, data_dir: Path, fake_model: FakeModelServer) -> None:
    fake_model.set_script(script({"text": "The answer is 42."}, {"text": "You asked about 42."}))
    first = cairn(repo, data_dir, "-p", "what is the answer?", "--json", env=model_env(fake_model))
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert "assistant_delta" in types
    assert events[-1]["stop_reason"] == "end_turn" and events[-1]["usage"]["input_tokens"] > 0
    # The last line alone tells a script the answer and where to continue it.
    assert events[-1]["text"] == "The answer is 42."
    assert isinstance(events[-1]["conversation_id"], str) and events[-1]["conversation_id"]
    seqs = [e["seq"] for e in events if "seq" in e]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    assert all("seq" not in e for e in events if e["type"] == "assistant_delta")

    again = cairn(repo, data_dir, "-p", "what did I ask?", "--continue", env=model_env(fake_model))
    assert again.returncode == 0, again.stderr
    sent = [m["content"] for m in fake_model.requests[-1].body["messages"]]
    assert sent[0].startswith("You are Cairn")  # the system message
    # in a new repository the first message is preceded by instructions to learn it
    assert "Learn this repository" in sent[1]
    assert sent[2:4] == ["what is the answer?", "The answer is 42."]

    fresh = cairn(repo, data_dir, "-p", "new topic", env=model_env(fake_model))
    assert fresh.returncode == 0, fresh.stderr
    assert [m["content"] for m in fake_model.requests[-1].body["messages"]][1:] == ["new topic"]


def test_a_run_cut_by_the_step_limit_says_so_and_continue_finishes_it(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("read", path="app.py")]},
            {"tool_calls": [call("read", path="README.md")]},
            {"text": "Both read: total() should add up the items."},
        )
    )
    env = {**model_env(fake_model), "CAIRN_STEP_LIMIT": "2"}
    stopped = cairn(repo, data_dir, "-p", "read app.py and the README", env=env)
    assert stopped.returncode == 1
    assert (
        "cairn: Step limit reached: stopped after 2 model calls, the run's step limit "
        '(CAIRN_STEP_LIMIT). Run cairn -c -p "continue" to pick the work up where it stopped.'
    ) in stopped.stderr

    resumed = cairn(repo, data_dir, "-c", "-p", "continue", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "Both read: total() should add up the items."
    messages = fake_model.requests[-1].body["messages"]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    assert len(results) == 2 and "TODO: make total() add up" in results[1]
    assert messages[-1] == {"role": "user", "content": "continue"}


def test_no_model_configured_explains_how(repo: Path, data_dir: Path) -> None:
    done = cairn(repo, data_dir, "-p", "hello")
    assert done.returncode == 2
    assert "CAIRN_MODEL" in done.stderr and "cairn demo" in done.stderr


def test_remote_server_needs_a_token(repo: Path, data_dir: Path) -> None:
    done = cairn(repo, data_dir, "-p", "hi", env={"CAIRN_SERVER_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2 and "CAIRN_TOKEN" in done.stderr


def test_wrong_token_is_refused_clearly(
    tmp_path: Path, repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    from support.servers import cairn_server, sqlite_url

    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        done = cairn(
            repo,
            data_dir,
            "-p",
            "hi",
            env={"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": "cairn_not_the_token"},
        )
    assert done.returncode == 2
    assert "token" in done.stderr


def test_without_a_sandbox_it_says_so_and_every_command_asks(
    tmp_path: Path, repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    config = tmp_path / "config"
    (config / "cairn").mkdir(parents=True)
    (config / "cairn" / "settings.toml").write_text("[sandbox]\nenabled = false\n")
    fake_model.set_script(
        script({"tool_calls": [call("shell", command="ls")]}, {"text": "Could not look."})
    )
    env = {**model_env(fake_model), "XDG_CONFIG_HOME": str(config)}
    done = cairn(repo, data_dir, "-p", "list files", "--approve", "all", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Sandbox: the sandbox is turned off in settings.toml") == 1
    told = json.dumps(fake_model.requests[-1].body["messages"][-1])
    assert "every shell command asks" in told and "only a person can allow it" in told


def test_ctrl_c_cancels_the_run_on_the_server_too(
    tmp_path: Path, repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "Too late.", "delay_s": 60}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        remote = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": TEST_TOKEN}
        process = start_cairn(repo, data_dir, "-p", "take your time", "--json", env=remote)
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert started["type"] == "run_started"
        wait_until(lambda: len(fake_model.requests) == 1, message="the model was never asked")

        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)

        assert "cairn: cancelled" in err
        headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
        run_url = f"{server.url}/v1/runs/{started['run_id']}"

        def stopped() -> bool:
            run = httpx.get(run_url, headers=headers).json()
            return bool(run["status"] == "finished" and run["stop_reason"] == "cancelled")

        wait_until(stopped, message="the run went on after Ctrl-C")


def test_a_folder_outside_git_is_said_so_once_at_start(tmp_path: Path, data_dir: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    done = cairn(folder, data_dir, "-p", "hello")
    assert done.returncode == 2  # no model configured
    assert done.stderr.count("is not in a git repository") == 1
    assert str(folder.resolve()) in done.stderr


def test_a_git_repository_gets_no_such_note(repo: Path, data_dir: Path) -> None:
    done = cairn(repo, data_dir, "-p", "hello")
    assert "not in a git repository" not in done.stderr


def test_a_server_that_cannot_be_reached_is_one_line_naming_it(repo: Path, data_dir: Path) -> None:
    unreachable = {"CAIRN_SERVER_URL": "http://127.0.0.1:9", "CAIRN_TOKEN": TEST_TOKEN}
    done = cairn(repo, data_dir, "-p", "hi", env=unreachable)
    assert done.returncode == 2
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert said == ["cairn: cannot reach the server at http://127.0.0.1:9: connection refused"]
