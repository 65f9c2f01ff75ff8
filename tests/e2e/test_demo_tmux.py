"""`cairn demo` in a real terminal: tmux runs the real command, keys go in, the screen is read.

A smoke test of the installed command end to end: request, approval diff, edit on disk, clean exit.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 120, 40
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


@dataclass
class Terminal:
    """One tmux pane on a private server; every call goes through that server's socket."""

    socket_name: str
    deadline: float
    seen_processes: dict[int, str] = field(default_factory=dict)

    def tmux(self, *args: str) -> str:
        finished = subprocess.run(
            ["tmux", "-L", self.socket_name, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return finished.stdout

    def screen(self) -> str:
        """The screen with its scrollback, wrapped lines joined so long paths stay whole."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "demo")

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "demo", *keys)

    def note_processes(self) -> dict[int, str]:
        """The processes running below the pane now, remembered for the clean-up."""
        pane_pid = int(self.tmux("display-message", "-p", "-t", "demo", "#{pane_pid}"))
        running = descendants(pane_pid)
        self.seen_processes |= running
        return running

    def wait_for(self, what: str, seen: Callable[[str], bool]) -> str:
        """Poll the screen until `seen` holds; fail with the last screen at the deadline."""
        while True:
            text = self.screen()
            if seen(text):
                return text
            if NOT_SENT in text:
                pytest.fail(f"the request was refused while waiting for {what}:\n{text}")
            if time.monotonic() > self.deadline:
                pytest.fail(f"timed out waiting for {what}; the screen was:\n{text}")
            time.sleep(0.1)


@contextmanager
def demo_terminal(tmp_path: Path) -> Iterator[Terminal]:
    """`cairn demo` in a fresh tmux server; the server and whatever the demo started are
    always gone afterwards."""
    config = tmp_path / "tmux.conf"
    config.write_text(
        "set -g default-terminal xterm-256color\n"
        # Keep the pane after the command exits, so its last words can still be read.
        "set -g remain-on-exit on\n"
    )
    temp_dir = tmp_path / "tmp"  # the demo's mkdtemp lands here, not in the real /tmp
    temp_dir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CAIRN_")}
    env |= {"CAIRN_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(temp_dir)}
    env["TERM"] = "xterm-256color"
    command = f"{shlex.quote(sys.executable)} -m cairn_client.cli demo; echo {EXIT_MARKER}$?"
    socket_name = f"cairn-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    terminal = Terminal(socket_name, time.monotonic() + DEADLINE_S)
    start = ["tmux", "-L", socket_name, "-f", str(config), "new-session", "-d", "-s", "demo"]
    start += ["-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(REPO_ROOT)]
    for key in ("CAIRN_DATA_DIR", "TMPDIR"):
        start += ["-e", f"{key}={env[key]}"]
    socket_path: Path | None = None
    try:
        subprocess.run([*start, command], env=env, cwd=REPO_ROOT, check=True, timeout=10)
        socket_path = Path(terminal.tmux("display-message", "-p", "#{socket_path}").strip())
        yield terminal
    finally:
        with suppress(subprocess.SubprocessError, ValueError):
            terminal.note_processes()
        with suppress(subprocess.SubprocessError):
            terminal.tmux("kill-server")
        if socket_path is not None:
            socket_path.unlink(missing_ok=True)  # tmux leaves it behind
        for pid in wait_until_gone(terminal.seen_processes, seconds=5):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def process_table() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every live process; zombies left out."""
    listing = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    table = []
    for line in listing.splitlines():
        pid, ppid, stat, args = (line.split(None, 3) + [""])[:4]
        if not stat.startswith("Z"):
            table.append((int(pid), int(ppid), args))
    return table


def descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, as pid → command line."""
    children: dict[int, list[tuple[int, str]]] = {}
    for pid, ppid, args in process_table():
        children.setdefault(ppid, []).append((pid, args))
    found: dict[int, str] = {}
    stack = [root]
    while stack:
        for pid, args in children.get(stack.pop(), []):
            found[pid] = args
            stack.append(pid)
    return found


def wait_until_gone(processes: dict[int, str], seconds: float) -> dict[int, str]:
    """Those of `processes` still alive after up to `seconds` (a reused pid is not them)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = {pid: args for pid, _, args in process_table() if processes.get(pid) == args}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


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
