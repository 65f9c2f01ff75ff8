"""A raw protocol client for server tests: frames in and out, nothing else.

Lets tests speak the wire protocol exactly, including frames a real client never sends.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from cairn_protocol import (
    PROTOCOL_VERSION,
    Hello,
    ServerFrame,
    ToolRequest,
    UserMessage,
    Welcome,
    WorkspaceIdentity,
)
from cairn_protocol.messages import Frame, ServerEvent, parse_server_frame
from websockets.asyncio.client import ClientConnection, connect

from support.servers import TEST_TOKEN
from support.waiting import scaled

WORKSPACE = WorkspaceIdentity(
    root_commit="a" * 40, origin="example.com/acme/app", display_name="app", path="/tmp/app"
)
F = TypeVar("F", bound=ServerEvent)

ALL_TOOLS = ["read", "grep", "glob", "edit", "apply_patch", "write", "shell"]


class WireClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seen: list[ServerFrame] = []

    @classmethod
    async def connect(cls, server_url: str) -> WireClient:
        socket = await connect(server_url.replace("http://", "ws://") + "/v1/ws")
        return cls(socket)

    async def hello(self, **fields: Any) -> ServerFrame:
        values: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "token": TEST_TOKEN,
            "workspace": WORKSPACE,
            "tools": ALL_TOOLS,
        }
        values.update(fields)
        await self.send(Hello(**values))
        return await self.recv()

    async def send(self, frame: Frame | str) -> None:
        await self.socket.send(frame if isinstance(frame, str) else frame.model_dump_json())

    async def recv(self, timeout: float = 10) -> ServerFrame:
        received = await asyncio.wait_for(self.socket.recv(), scaled(timeout))
        frame = parse_server_frame(received)
        self.seen.append(frame)
        return frame

    async def recv_until(self, frame_class: type[F], timeout: float = 10) -> F:
        """Frames until one of `frame_class` (returned, typed); the others stay in `seen`."""
        while True:
            frame = await self.recv(timeout)
            if isinstance(frame, frame_class):
                return frame

    async def close(self) -> None:
        await self.socket.close()


async def connected(server_url: str, **hello: Any) -> tuple[WireClient, Welcome]:
    """A client that said hello (`hello`'s fields over the defaults) and was welcomed."""
    client = await WireClient.connect(server_url)
    welcome = await client.hello(**hello)
    assert isinstance(welcome, Welcome), welcome
    return client, welcome


async def asked_for_a_tool(server_url: str, text: str) -> tuple[WireClient, ToolRequest]:
    """A new client, welcomed, that said `text`; and the first tool request of its run."""
    client = await WireClient.connect(server_url)
    await client.hello()
    await client.send(UserMessage(text=text))
    return client, await client.recv_until(ToolRequest)
