"""`cairn ticket` in a real terminal: tmux runs the real command, keys go in, the screen is read.

A smoke test of the interactive ticket end to end: plan review, edit approval, one commit, exit 0,
and nothing left running but the local server.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest
from cairn_client.local_server import process_running, read_state, stop_local_server
from cairn_fakes.runner import FakeModelServer
from support.repos import APP_AFTER, APP_BEFORE, GIT_ENV, run_git
from support.servers import call, model_env, script
from support.terminal import terminal, wait_until_gone

DEADLINE_S = 60.0
EXIT_MARKER = "cairn-ticket-exit-status="
TICKET = "# Make total add up\n\ntotal() returns 1 whatever the items are.\n"
BRANCH = "cairn/make-total-add-up"
PLAN = "Plan: make total() return sum(items)."
EDIT = call("edit", path="app.py", old_string="return 1", new_string="return sum(items)")
# On screen, these end any wait at once: the ticket cannot go on.
STOP_WORDS = ["The ticket stopped", "was not sent"]

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_a_ticket_is_planned_approved_and_committed_in_a_real_terminal(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    (repo / "ticket.md").write_text(TICKET)
    run_git(repo, "add", "ticket.md")
    run_git(repo, "commit", "-qm", "add a ticket")
    fake_model.set_script(script({"text": PLAN}, {"tool_calls": [EDIT]}, {"text": "Done."}))
    env = {
        **model_env(fake_model),
        **GIT_ENV,
        "CAIRN_DATA_DIR": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # the user's policy settings stay out
    }
    command = f"{shlex.quote(sys.executable)} -m cairn_client.cli ticket ticket.md"
    command += f"; echo {EXIT_MARKER}$?"

    with terminal(command, cwd=repo, env=env, deadline_s=DEADLINE_S, stop_words=STOP_WORDS) as term:
        term.wait_for(
            "the plan review",
            lambda s: "Plan for Make total add up" in s and PLAN in s,
        )
        term.send("y")
        screen = term.wait_for(
            "the approval screen with the diff",
            lambda s: "-    return 1" in s and "+    return sum(items)" in s and "Allow once" in s,
        )
        helpers = term.note_processes()
        state = read_state(tmp_path / "data")
        assert state is not None and "cairn_server serve" in helpers.get(state.pid, ""), (
            f"no local cairn_server below the ticket: {helpers}\n{screen}"
        )
        assert (repo / "app.py").read_text() == APP_BEFORE, f"edited before approval:\n{screen}"

        term.send("y")
        term.wait_for("the summary in the chat", lambda s: f"committed on {BRANCH}" in s)
        term.send("C-q")
        screen = term.wait_for("the ticket to exit", lambda s: EXIT_MARKER in s)

        assert f"{EXIT_MARKER}0" in screen, f"`cairn ticket` did not exit with 0:\n{screen}"
        assert run_git(repo, "rev-list", "--count", f"main..{BRANCH}") == "1"
        assert run_git(repo, "show", f"{BRANCH}:app.py") + "\n" == APP_AFTER
        # The local server stays up for the next `cairn`; nothing else is left.
        others = {pid: args for pid, args in term.seen_processes.items() if pid != state.pid}
        left = wait_until_gone(others, seconds=10)
        assert not left, f"still running after the ticket quit: {left}\n{screen}"
        assert process_running(state.pid)
        stop_local_server(tmp_path / "data")
