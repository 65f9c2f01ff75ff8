"""The shell tool: one `/bin/sh -c` command in the workspace root, bounded in time and output.

Owns the process group (so a timeout kills everything the command started), the
output capture that never holds more than the cap, and the text the model sees; how the
command is started (in the sandbox or not) comes from tools/sandbox.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn_client.tools.sandbox import Launch

DEFAULT_TIMEOUT_S = 120.0
OUTPUT_LIMIT = 30_000  # bytes of stdout + stderr shown; the middle of longer output is cut
KILL_GRACE_S = 2.0  # between SIGTERM and SIGKILL on timeout
PIPE_GRACE_S = 1.0  # how long output may stay open after the shell itself exited
_GROUP_POLL_S = 0.05


@dataclass
class _CappedStream:
    """The first and last OUTPUT_LIMIT bytes of a stream, and its total length."""

    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = OUTPUT_LIMIT - len(self.head)
        self.head += chunk[:room]
        self.tail += chunk[room:]
        del self.tail[:-OUTPUT_LIMIT]

    def clipped(self, budget: int) -> str:
        """At most `budget` bytes: the whole stream, or its start and end with a note."""
        if self.total <= budget:
            return bytes(self.head + self.tail).decode("utf-8", errors="replace")
        keep_start = budget // 2
        keep_end = budget - keep_start
        gap = self.total - len(self.head) - len(self.tail)
        end_source = self.tail if gap > 0 else self.head + self.tail
        start = bytes(self.head[:keep_start]).decode("utf-8", errors="replace")
        end = bytes(end_source[len(end_source) - keep_end :]).decode("utf-8", errors="replace")
        return f"{start}\n[… {self.total - budget:,} bytes of output cut …]\n{end}"


@dataclass(frozen=True)
class ShellResult:
    command: str
    exit_code: int | None  # None when the command was killed on timeout
    stdout: str
    stderr: str
    timed_out: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    detached_output: bool = False  # background children kept the output open: stopped
    killed_after_s: float | None = None  # stopped from outside (a withdrawn call) this soon

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def as_text(self) -> str:
        """What the model reads: status line, then labelled stdout and stderr."""
        if self.timed_out:
            status = (
                f"timed out after {self.timeout_s:g} s; the command and every process it "
                "started were killed"
            )
        elif self.killed_after_s is not None:
            status = (
                f"killed after {self.killed_after_s:.1f} s, before it finished; the command and "
                "every process it started were stopped"
            )
        else:
            status = f"exit code: {self.exit_code}"
        lines = [status]
        if self.stdout:
            lines += ["stdout:", self.stdout.rstrip("\n")]
        if self.stderr:
            lines += ["stderr:", self.stderr.rstrip("\n")]
        if not self.stdout and not self.stderr:
            lines.append("(no output)")
        if self.detached_output:
            lines.append(
                "(background processes that kept the output open were stopped; redirect "
                "their output, e.g. `cmd > log 2>&1 &`, to keep them running)"
            )
        return "\n".join(lines)


async def run_shell(
    root: Path, command: str, timeout_s: float | None, launch: Launch
) -> ShellResult:
    """Run `command` in `root` as `launch` says (in the sandbox or not, and with which
    environment), stdin closed, in its own process group."""
    limit = timeout_s or DEFAULT_TIMEOUT_S
    loop = asyncio.get_running_loop()
    started = loop.time()
    transport, shell, stopped_while_starting = await _start(root, launch)
    group = transport.get_pid()
    timed_out = detached = False
    killed_after: float | None = None
    try:
        if stopped_while_starting:
            raise asyncio.CancelledError  # stopped like a command cancelled while it runs
        if not await _within(shell.exited.wait(), limit):
            timed_out = True
            await _kill_group(group, shell)
        if not await _within(shell.output_closed.wait(), PIPE_GRACE_S):
            # Background children still hold the output open. The command is over: stop
            # them, or neither they nor the pipes would ever be cleaned up.
            detached = True
            await _kill_group(group, shell)
            await _within(shell.output_closed.wait(), PIPE_GRACE_S)
    except asyncio.CancelledError:  # stopped (Esc, a withdrawn call): kill it, keep its output
        await _kill_group(group, shell)
        killed_after = loop.time() - started
    except BaseException:  # leave nothing running
        await _kill_group(group, shell)
        raise
    finally:
        transport.close()
    out, err = shell.stdout, shell.stderr
    budget_err = min(err.total, max(OUTPUT_LIMIT // 2, OUTPUT_LIMIT - out.total))
    return ShellResult(
        command=command,
        exit_code=None if timed_out or killed_after is not None else transport.get_returncode(),
        stdout=out.clipped(OUTPUT_LIMIT - budget_err),
        stderr=err.clipped(budget_err),
        timed_out=timed_out,
        timeout_s=limit,
        detached_output=detached,
        killed_after_s=killed_after,
    )


async def _start(
    root: Path, launch: Launch
) -> tuple[asyncio.SubprocessTransport, _ShellProtocol, bool]:
    """The started command, and whether it was cancelled while starting.

    Starting is not interrupted: the process may already run (and have started children)
    before its pipes are connected, and asyncio would kill only the shell itself and lose
    its output. The caller stops the whole group instead.
    """
    starting = asyncio.ensure_future(
        asyncio.get_running_loop().subprocess_exec(
            _ShellProtocol,
            *launch.argv,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own session and process group, no controlling terminal
            env=launch.env,
        )
    )
    try:
        transport, shell = await asyncio.shield(starting)
    except asyncio.CancelledError:
        transport, shell = await starting
        return transport, shell, True
    return transport, shell, False


class _ShellProtocol(asyncio.SubprocessProtocol):
    """Collects the output and tells when the shell exited and when its output closed.

    (asyncio's Process.wait() would also wait for any background child holding the
    output open; here the shell's own exit is a separate event.)
    """

    def __init__(self) -> None:
        self.stdout = _CappedStream()
        self.stderr = _CappedStream()
        self.exited = asyncio.Event()
        self.output_closed = asyncio.Event()
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.stdout if fd == 1 else self.stderr).add(chunk)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes:
            self.output_closed.set()

    def process_exited(self) -> None:
        self.exited.set()


async def _within(awaitable: Awaitable[Any], seconds: float) -> bool:
    """Whether `awaitable` finished within `seconds` (it is cancelled if not)."""
    try:
        await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _kill_group(group: int, shell: _ShellProtocol) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace."""
    _signal_group(group, signal.SIGTERM)
    for _ in range(int(KILL_GRACE_S / _GROUP_POLL_S)):
        if not _group_alive(group):
            break
        await asyncio.sleep(_GROUP_POLL_S)  # no event tells when a whole group is gone
    _signal_group(group, signal.SIGKILL)
    await shell.exited.wait()


def _group_alive(group: int) -> bool:
    """Whether any process of the group still runs (zombies, which nobody may reap, don't)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[2] == str(group) and fields[0] != "Z":
            return True
    return False


def _signal_group(group: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
