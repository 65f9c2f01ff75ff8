"""Runs started over the raw wire, for server tests: a client that said something and the
first tool request its run sent back.
"""

from __future__ import annotations

from cairn_protocol import ToolRequest, UserMessage

from support.wire import WireClient


async def asked_for_a_tool(server_url: str, text: str) -> tuple[WireClient, ToolRequest]:
    """A new client, welcomed, that said `text`; and the first tool request of its run."""
    client = await WireClient.connect(server_url)
    await client.hello()
    await client.send(UserMessage(text=text))
    request = await client.recv_until("tool_request")
    assert isinstance(request, ToolRequest)
    return client, request
