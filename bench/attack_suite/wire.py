"""Speaking the wire protocol raw, as a hostile or broken client would, and reading what the
server answers: a frame, a close (with its code), or nothing before a timeout.

Owns the websocket helpers the protocol, storage and multi-client attacks share, and a
tiny tmux driver for the attacks that need the real TUI in a real terminal.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn_protocol import PROTOCOL_VERSION
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TOOLS = ["read", "grep", "glob", "edit", "apply_patch", "write", "shell"]


def hello(token: str, **overrides: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "hello",
        "protocol_version": PROTOCOL_VERSION,
        "token": token,
        "workspace": {
            "root_commit": uuid.uuid4().hex + "00000000",
            "origin": "example.com/attacks/wire",
            "display_name": "wire",
            "path": "/nowhere/wire",
        },
        "tools": TOOLS,
        "conversation": "new",
    }
    frame.update(overrides)
    return frame


@dataclass
class Answer:
    """What the server did next: sent `frame`, closed (`close_code`), or neither in time."""

    frame: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""
    timed_out: bool = False

    @property
    def type(self) -> str:
        return str(self.frame.get("type")) if self.frame else ""

    def describe(self) -> str:
        if self.frame is not None:
            return f"frame {json.dumps(self.frame)[:160]}"
        if self.close_code is not None:
            return f"closed with {self.close_code} {self.close_reason!r} and no error frame"
        return "no answer in time"


class Wire:
    """One raw websocket connection to a server."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server_url: str) -> Wire:
        url = server_url.replace("http://", "ws://") + "/v1/ws"
        return cls(await connect(url, max_size=None, open_timeout=10))

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.socket.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def answer(self, timeout: float = 10) -> Answer:
        try:
            raw = await asyncio.wait_for(self.socket.recv(), timeout)
        except TimeoutError:
            return Answer(timed_out=True)
        except ConnectionClosed as closed:
            received = closed.rcvd
            return Answer(
                close_code=received.code if received else 1006,
                close_reason=received.reason if received else "",
            )
        frame = json.loads(raw)
        self.seen.append(frame)
        return Answer(frame=frame)

    async def until(self, *types: str, timeout: float = 30) -> Answer:
        """Frames until one of `types` (or a close, or the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            answer = await self.answer(max(0.1, deadline - loop.time()))
            if answer.frame is None or answer.type in types:
                return answer

    async def welcomed(self, token: str, **overrides: Any) -> bool:
        await self.send(hello(token, **overrides))
        return (await self.answer()).type == "welcome"

    async def close(self) -> None:
        await self.socket.close()


async def first_answer(server_url: str, frame: dict[str, Any] | str | bytes) -> Answer:
    """The server's answer to `frame` sent first on a fresh connection, closed after."""
    wire = await Wire.open(server_url)
    try:
        await wire.send(frame)
        return await wire.answer()
    finally:
        await wire.close()


# --------------------------------------------------------------------------- tmux


@dataclass
class Tmux:
    """One command in one pane of a private tmux server (for the real TUI)."""

    socket: str

    @classmethod
    def start(cls, cwd: Path, argv: list[str], env: dict[str, str]) -> Tmux:
        tmux = cls(f"cairn-attacks-{uuid.uuid4().hex[:8]}")
        command = (
            "exec env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
            + " "
            + shlex.join(argv)
        )
        tmux.run(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            str(cwd),
            command,
        )
        tmux.run("set-option", "-t", "main", "remain-on-exit", "on")
        return tmux

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-J", "-S", "-", "-t", "main")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "main", *keys)

    def kill(self) -> None:
        self.run("kill-server")
