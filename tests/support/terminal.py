"""A real terminal for end-to-end tests: a private tmux server runs one command in one pane.

Owns starting and killing that server, sending keys, reading the screen, and finding the
processes the command started so a test can check none is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.waiting import Deadline

WIDTH, HEIGHT = 120, 40
PANE = "main"
# Settings of the caller's own that must not reach the command unless the test passes them.
PRIVATE_PREFIXES = ("CAIRN_", "OPENAI_", "ANTHROPIC_")
TMUX_CONFIG = (
    "set -g default-terminal xterm-256color\n"
    # Keep the pane after the command exits, so its last words can still be read.
    "set -g remain-on-exit on\n"
)


@dataclass
class Terminal:
    """One tmux pane on a private server; every call goes through that server's socket."""

    socket_name: str
    deadline: Deadline
    # Text that, once on screen, ends any wait at once: the flow cannot go on.
    stop_words: Sequence[str] = ()
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
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", PANE)

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", PANE, *keys)

    def note_processes(self) -> dict[int, str]:
        """The processes running below the pane now, remembered for the clean-up."""
        pane_pid = int(self.tmux("display-message", "-p", "-t", PANE, "#{pane_pid}"))
        running = descendants(pane_pid)
        self.seen_processes |= running
        return running

    def wait_for(self, what: str, seen: Callable[[str], bool]) -> str:
        """Poll the screen until `seen` holds; fail with the last screen at the deadline."""
        while True:
            text = self.screen()
            if seen(text):
                return text
            for word in self.stop_words:
                if word in text:
                    pytest.fail(f"{word!r} came up while waiting for {what}:\n{text}")
            if self.deadline.passed():
                pytest.fail(f"timed out waiting for {what}; the screen was:\n{text}")
            time.sleep(0.1)


@contextmanager
def terminal(
    command: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    deadline_s: float,
    stop_words: Sequence[str] = (),
) -> Iterator[Terminal]:
    """`command` (a shell line) in a fresh tmux server, in `cwd`, with `env` set on top of this
    process's environment less its Cairn and model settings. The server and whatever the
    command started are always gone afterwards."""
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_PREFIXES)}
    server_env |= {**env, "TERM": "xterm-256color"}
    socket_name = f"cairn-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    term = Terminal(socket_name, Deadline(deadline_s), stop_words)
    socket_path: Path | None = None
    try:
        _start_server(socket_name, command, cwd, env, server_env)
        socket_path = Path(term.tmux("display-message", "-p", "#{socket_path}").strip())
        yield term
    finally:
        with suppress(subprocess.SubprocessError, ValueError):
            term.note_processes()
        with suppress(subprocess.SubprocessError):
            term.tmux("kill-server")
        if socket_path is not None:
            socket_path.unlink(missing_ok=True)  # tmux leaves it behind
        for pid in wait_until_gone(term.seen_processes, seconds=5):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_server(
    socket_name: str,
    command: str,
    cwd: Path,
    env: Mapping[str, str],
    server_env: dict[str, str],
) -> None:
    with tempfile.NamedTemporaryFile("w", prefix="cairn-tmux-", suffix=".conf") as config:
        config.write(TMUX_CONFIG)
        config.flush()  # the server reads it as it starts, before new-session returns
        start = ["tmux", "-L", socket_name, "-f", config.name, "new-session", "-d", "-s", PANE]
        start += ["-x", str(WIDTH), "-y", str(HEIGHT), "-c", str(cwd)]
        for key, value in env.items():
            start += ["-e", f"{key}={value}"]
        subprocess.run([*start, command], env=server_env, cwd=cwd, check=True, timeout=10)


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
    deadline = Deadline(seconds)
    while True:
        alive = {pid: args for pid, _, args in process_table() if processes.get(pid) == args}
        if not alive or deadline.passed():
            return alive
        time.sleep(0.1)
