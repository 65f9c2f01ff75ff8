"""The real `cairn ticket` command, headless: a ticket becomes a reviewed plan, edits and one
commit on a branch; memory carries to the next ticket; usage errors create nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn, start_cairn
from support.repos import APP_AFTER, APP_BEFORE, run_git
from support.servers import call, model_env, script
from support.ticket_apis import GITHUB_TEST_TOKEN, LINEAR_TEST_KEY, FakeGitHub, FakeLinear
from support.waiting import wait_until

EDIT = call("edit", path="app.py", old_string="return 1", new_string="return sum(items)")
TEST_RUN = call("shell", command="python -m pytest -q")
LEARNED = "Tests: python -m pytest -q (tests live next to the code)"
PLAN = "1. In app.py make total() return sum(items).\n2. Run python -m pytest -q."
TICKET = "# Make total add up\n\ntotal() returns 1 whatever the items are.\n"
TEST_FILE = "from app import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"


def ticket_turns() -> list[dict[str, Any]]:
    """Plan (read-only), then implement: edit, test, note what was learned, summary."""
    return [
        {"text": "Looking first. ", "tool_calls": [call("read", path="app.py")]},
        {"text": PLAN},
        {"tool_calls": [EDIT]},
        {"tool_calls": [TEST_RUN]},
        {"tool_calls": [call("memory_insert", label="project", text=LEARNED)]},
        {"text": "total() now adds the items; the test passes."},
    ]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def ticket_repo(repo: Path) -> Path:
    (repo / "test_app.py").write_text(TEST_FILE)
    (repo / "ticket.md").write_text(TICKET)
    (repo / ".gitignore").write_text("__pycache__/\n")  # the tests' run leaves bytecode
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-qm", "add a test and a ticket")
    return repo


def test_a_ticket_becomes_one_commit_on_its_branch_and_the_next_ticket_remembers(
    ticket_repo: Path, data_dir: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script(*ticket_turns()))
    patch_file = tmp_path / "out.patch"
    done = cairn(
        ticket_repo,
        data_dir,
        "ticket",
        "ticket.md",
        "--approve",
        "all",
        "--json",
        "--patch-out",
        str(patch_file),
        env=model_env(fake_model),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "patch"
    assert result["branch"] == "cairn/make-total-add-up"
    assert result["files_changed"] == ["app.py"]
    assert result["tests"] == [
        {"command": "python -m pytest -q", "status": "passed", "detail": None}
    ]
    assert result["usage"]["input_tokens"] > 0 and len(result["runs"]) == 2

    # One commit on the branch, referencing the ticket; the file as the agent left it.
    assert run_git(ticket_repo, "branch", "--show-current") == "cairn/make-total-add-up"
    log = run_git(ticket_repo, "log", "--format=%s%n%b", "main..HEAD")
    assert log.startswith("Make total add up") and "Ticket: ticket.md" in log
    assert run_git(ticket_repo, "rev-list", "--count", "main..HEAD") == "1"
    assert (ticket_repo / "app.py").read_text() == APP_AFTER
    assert "+    return sum(items)" in patch_file.read_text()

    # The plan was asked for in plan mode: the first request says so and carries the ticket.
    first_ask = json.dumps(fake_model.requests[0].body["messages"][-1])
    assert "plan mode" in first_ask and "total() returns 1 whatever" in first_ask
    implement_ask = json.dumps(fake_model.requests[2].body["messages"])
    assert (
        "The plan below is approved" in implement_ask and "make total() return sum" in implement_ask
    )

    # A second ticket on the same codebase starts knowing what the first taught.
    run_git(ticket_repo, "switch", "-q", "main")
    asked_before = len(fake_model.requests)
    fake_model.set_script(script({"text": "Plan: nothing to do."}, {"text": "Nothing changed."}))
    second = cairn(
        ticket_repo, data_dir, "ticket", "-", stdin="Rename total\n", env=model_env(fake_model)
    )
    assert second.returncode == 1, second.stderr  # no changes: no patch
    assert "changed no files" in second.stdout
    assert run_git(ticket_repo, "branch", "--list", "cairn/rename-total") == ""  # nothing left
    system_prompt = json.dumps(fake_model.requests[asked_before].body["messages"][0])
    assert LEARNED in system_prompt


def test_headless_without_approval_denies_edits_and_produces_no_patch(
    ticket_repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    turns = ticket_turns()
    fake_model.set_script(script(turns[0], turns[1], turns[2], {"text": "I could not edit."}))
    done = cairn(ticket_repo, data_dir, "ticket", "ticket.md", "--json", env=model_env(fake_model))
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "no_changes"
    assert result["approvals"] == {"asked": 1, "given": 0}
    assert (ticket_repo / "app.py").read_text() == APP_BEFORE
    denial = json.dumps(fake_model.requests[-1].body["messages"][-1])
    assert "--approve" in denial  # the model is told why


@pytest.mark.parametrize(
    ("prepare", "args", "message"),
    [
        (lambda repo: (repo / "app.py").write_text("dirty\n"), ["ticket.md"], "--allow-dirty"),
        (lambda repo: run_git(repo, "branch", "cairn/make-total-add-up"), ["ticket.md"], "exists"),
        (lambda repo: None, ["missing.md"], "missing.md"),
        (lambda repo: None, ["-"], "empty"),
        (lambda repo: run_git(repo, "switch", "-q", "--detach"), ["ticket.md"], "detached"),
        (lambda repo: None, ["ticket.md", "--pr"], "GITHUB_TOKEN"),
        (lambda repo: None, ["ticket.md", "--patch-out", "no/such/dir/x.patch"], "does not exist"),
    ],
    ids=[
        "dirty",
        "branch-exists",
        "no-such-file",
        "empty-stdin",
        "detached-head",
        "pr-without-token",
        "patch-out-nowhere",
    ],
)
def test_a_ticket_that_cannot_start_is_one_line_exit_2_and_creates_nothing(
    ticket_repo: Path, data_dir: Path, prepare: Any, args: list[str], message: str
) -> None:
    prepare(ticket_repo)
    branches = run_git(ticket_repo, "branch", "--list")
    done = cairn(ticket_repo, data_dir, "ticket", *args, "--json")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert json.loads(done.stdout)["outcome"] == "error"
    assert run_git(ticket_repo, "branch", "--list") == branches


def test_a_killed_ticket_resumes_where_it_stood(
    ticket_repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    turns = ticket_turns()
    fake_model.set_script(
        script(
            turns[0],
            turns[1],
            {"tool_calls": [call("shell", command=SLEEPER)]},
            {"tool_calls": [EDIT]},
            {"text": "Done after the interruption."},
        )
    )
    first = start_cairn(
        ticket_repo,
        data_dir,
        *("ticket", "ticket.md", "--approve", "all"),
        env=model_env(fake_model),
        output=subprocess.DEVNULL,
        new_session=True,
    )
    try:
        found: list[int] = []

        def reached_shell_call() -> bool:
            found.extend(pid for pid in [_sleep_pid()] if pid is not None)
            return bool(found)

        wait_until(reached_shell_call, 60, "the ticket never reached its shell call")
        sleeper = found[0]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the client; the local server stays up
        first.wait()
    # The sandbox dies with its client; without one the call runs in a session of its own.
    with contextlib.suppress(ProcessLookupError):
        os.kill(sleeper, signal.SIGKILL)

    resumed = cairn(
        ticket_repo, data_dir, "ticket", "--resume", "--json", env=model_env(fake_model)
    )
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["outcome"] == "patch" and result["files_changed"] == ["app.py"]
    assert run_git(ticket_repo, "rev-list", "--count", "main..cairn/make-total-add-up") == "1"
    # The run went on waiting on the server that outlived the client: the resumed client told
    # the model its shell call may have run (it had started: never "not run"), without
    # running it again, and the run went on from there.
    messages = fake_model.requests[3].body["messages"]
    assert messages[-1]["role"] == "tool"
    assert "may or may not have taken effect" in messages[-1]["content"]
    assert _sleep_pid() is None  # the interrupted call was not run again


# A duration no other test sleeps, so a parallel test's sleep is never taken for this one.
SLEEPER = "sleep 30.517"


def _sleep_pid() -> int | None:
    """The SLEEPER the scripted shell call runs, once it runs."""
    listed = subprocess.run(["ps", "-A", "-o", "pid=,args="], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if args.strip() == SLEEPER:
            return int(pid)
    return None


def test_a_github_issue_becomes_a_pull_request(
    ticket_repo: Path, data_dir: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    origin = tmp_path / "origin.git"
    run_git(tmp_path, "init", "-q", "--bare", str(origin))
    run_git(ticket_repo, "remote", "add", "origin", str(origin))
    run_git(ticket_repo, "push", "-q", "origin", "main")
    fake_model.set_script(script(*ticket_turns()))
    with FakeGitHub() as github:
        github.add_issue("acme/shop", 42, "Total ignores the items", "total() returns 1.")
        github_env = {
            **model_env(fake_model),
            "GITHUB_TOKEN": GITHUB_TEST_TOKEN,
            "CAIRN_GITHUB_API_URL": github.api_url,
        }
        github.pulls_rate_limited = True
        done = cairn(
            ticket_repo,
            data_dir,
            "ticket",
            "acme/shop#42",
            "--approve",
            "all",
            "--pr",
            "--json",
            env=github_env,
        )
        # GitHub refuses at first (rate limit): the commit stands, the pull request waits.
        assert done.returncode == 1, done.stderr
        result = json.loads(done.stdout)
        assert result["outcome"] == "patch" and result["pr_url"] is None
        assert "rate limit" in result["problems"][0]
        github.pulls_rate_limited = False
        again = cairn(ticket_repo, data_dir, "ticket", "--resume", "--json", env=github_env)
        assert again.returncode == 0, again.stderr
        retried = json.loads(again.stdout)
        assert retried["pr_url"] and retried["commit"] == result["commit"]
        [pull] = github.pulls
    assert pull["head"]["ref"] == "cairn/42" and pull["base"]["ref"] == "main"
    assert "Closes acme/shop#42" in pull["body"] and "app.py" in pull["body"]
    assert run_git(origin, "rev-parse", "cairn/42") == run_git(ticket_repo, "rev-parse", "HEAD")
    assert "total() returns 1." in json.dumps(fake_model.requests[0].body["messages"][-1])


def test_a_linear_issue_that_does_not_exist_is_a_usage_error(
    ticket_repo: Path, data_dir: Path
) -> None:
    with FakeLinear() as linear:
        done = cairn(
            ticket_repo,
            data_dir,
            "ticket",
            "ENG-404",
            "--headless",
            env={"LINEAR_API_KEY": LINEAR_TEST_KEY, "CAIRN_LINEAR_API_URL": linear.api_url},
        )
    assert done.returncode == 2
    assert "ENG-404" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert run_git(ticket_repo, "branch", "--list", "cairn/*") == ""


def test_a_ticket_in_a_worktree_leaves_the_checkout_alone(
    ticket_repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    (ticket_repo / "notes.txt").write_text("my own work in progress\n")  # ignored by the ticket
    fake_model.set_script(script(*ticket_turns()))
    done = cairn(
        ticket_repo,
        data_dir,
        "ticket",
        "ticket.md",
        "--worktree",
        "--allow-dirty",
        "--approve",
        "all",
        "--json",
        env=model_env(fake_model),
    )
    assert done.returncode == 0, done.stderr
    workdir = Path(json.loads(done.stdout)["workdir"])
    assert workdir == ticket_repo.parent / "repo-cairn-make-total-add-up"
    assert (workdir / "app.py").read_text() == APP_AFTER
    assert not (workdir / "notes.txt").exists()
    assert run_git(ticket_repo, "branch", "--show-current") == "main"
    assert (ticket_repo / "app.py").read_text() == APP_BEFORE
    assert run_git(ticket_repo, "rev-list", "--count", "main..cairn/make-total-add-up") == "1"
