"""`cairn demo` in a real terminal: tmux runs the real command, keys go in, the screen is read.

A smoke test of the installed command end to end: request, approval diff, edit on disk, clean exit.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from support.terminal import Terminal, terminal, wait_until_gone

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
EXIT_MARKER = "cairn-demo-exit-status="
REQUEST = "Find the TODO in this repository and fix it."
DIFF_REMOVED = '-    return "hey " + name'
DIFF_ADDED = '+    return f"Hello, {name}!"'
FINAL_WORDS = "That was the whole loop"
REPO_LINE = re.compile(r"The demo repository is at (\S+) \(look at greet\.py\)\.")
CONNECTED = re.compile(r"· connected ·")
# On screen, this ends any wait at once: the request is gone and the flow cannot go on.
NOT_SENT = "was not sent"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def demo_terminal(tmp_path: Path) -> AbstractContextManager[Terminal]:
    """`cairn demo` in a fresh tmux server, run from this repository."""
    temp_dir = tmp_path / "tmp"  # the demo's mkdtemp lands here, not in the real /tmp
    temp_dir.mkdir()
    command = f"{shlex.quote(sys.executable)} -m cairn_client.cli demo; echo {EXIT_MARKER}$?"
    env = {"CAIRN_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(temp_dir)}
    return terminal(command, cwd=REPO_ROOT, env=env, deadline_s=DEADLINE_S, stop_words=[NOT_SENT])


@pytest.mark.parametrize("enter_at_once", [False, True], ids=["once-connected", "enter-at-once"])
def test_demo_fixes_the_todo_in_a_real_terminal(tmp_path: Path, enter_at_once: bool) -> None:
    """The user presses Enter on the prefilled request: after the status line says connected,
    or as soon as the request is on screen (what a newcomer to the demo does)."""
    with demo_terminal(tmp_path) as term:
        term.wait_for(
            "the prefilled request" if enter_at_once else "the request and a connection",
            lambda s: REQUEST in s and (enter_at_once or CONNECTED.search(s) is not None),
        )
        term.send("Enter")
        screen = term.wait_for(
            "the approval screen with the diff",
            lambda s: DIFF_REMOVED in s and DIFF_ADDED in s and "Allow once" in s,
        )
        helpers = term.note_processes()
        assert any("cairn_server serve" in args for args in helpers.values()), (
            f"no embedded cairn_server below the demo: {helpers}\n{screen}"
        )
        (greet_before,) = tmp_path.glob("tmp/cairn-demo-*/greeter/greet.py")
        assert "hey " in greet_before.read_text(), f"greet.py edited before approval:\n{screen}"

        term.send("y")
        term.wait_for("the final answer", lambda s: FINAL_WORDS in s)
        term.send("C-q")
        screen = term.wait_for("the demo to exit", lambda s: EXIT_MARKER in s)

        match = REPO_LINE.search(screen)
        assert match, f"no 'The demo repository is at' line after quitting:\n{screen}"
        greet = Path(match.group(1)) / "greet.py"
        assert greet.resolve() == greet_before.resolve(), screen
        assert 'return f"Hello, {name}!"' in greet.read_text(), greet.read_text()
        assert f"{EXIT_MARKER}0" in screen, f"`cairn demo` did not exit with 0:\n{screen}"
        left = wait_until_gone(helpers, seconds=10)
        assert not left, f"still running after the demo quit: {left}\n{screen}"
        noise = [
            line
            for line in screen.splitlines()
            if line.strip()
            and not (REPO_LINE.search(line) or EXIT_MARKER in line or line.startswith("Pane is"))
        ]
        assert not noise, "`cairn demo` printed more than its last line while quitting:\n" + (
            "\n".join(noise)
        )
