"""The client's running MCP servers: started, their tools listed and offered, calls made.

Owns each stdio server's life (one task holds its SDK client from start to stop, its stderr
goes to a log in the data folder), turning its tools into `McpToolOffer`s, and making one call
within its timeout: a server that crashed, hangs, or answers with garbage or a result that
does not validate gives a clear error, never a wait without end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cairn_protocol.mcp import (
    DESCRIPTION_LIMIT,
    TOOLS_PER_HELLO,
    McpToolOffer,
    describe_failure,
    mcp_tool_name,
    result_text,
    schema_problem,
    short,
)
from cairn_protocol.mcp import (
    check_arguments as check_schema,
)
from pydantic import ValidationError

from cairn_client.mcp.config import McpServerConfig, McpSetup
from cairn_client.tools.base import McpCall, ToolOutcome

log = logging.getLogger(__name__)
# The SDK logs every unreadable line and transport fault itself; the person is told once by
# Cairn instead, and a TUI's screen is never written over.
logging.getLogger("mcp").setLevel(logging.CRITICAL)
TOOLS_PER_SERVER = 300
STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class McpTool:
    """One tool as its server listed it, under the name the model sees."""

    server: str
    tool: str
    offer: McpToolOffer


@dataclass
class _Server:
    config: McpServerConfig
    client: Any = None  # mcp.Client once started
    tools: list[McpTool] = field(default_factory=list)
    problem: str | None = None  # why it is not usable (failed to start, exited)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    # Replaced each time the server sends something unreadable; waiting calls fail at once.
    garbage: asyncio.Event = field(default_factory=asyncio.Event)
    garbage_text: str = ""


class McpServers:
    """The MCP servers of one session. `start` before the hello; `stop` at its end."""

    def __init__(self, setup: McpSetup, cwd: Path, log_dir: Path) -> None:
        self.setup = setup
        self._cwd = cwd
        self._log_dir = log_dir
        self._servers = {config.name: _Server(config) for config in setup.servers}
        self._tools: dict[str, McpTool] = {}
        self._started = False
        self._logs: list[TextIO] = []

    async def start(self) -> list[str]:
        """Start every server at once and list its tools (each within its start timeout);
        one line per server that could not, for the person. Later calls do nothing."""
        if self._started:
            return []
        self._started = True
        await asyncio.gather(*(self._start(server) for server in self._servers.values()))
        notes = [
            f"MCP: server {name} is not available: {server.problem}"
            for name, server in self._servers.items()
            if server.problem is not None
        ]
        self._index_tools(notes)
        untrusted = self.setup.untrusted_note()
        return [*self.setup.notes, *notes, *([untrusted] if untrusted else [])]

    def offers(self) -> list[McpToolOffer]:
        """The tools offered to the server in the hello."""
        return [tool.offer for tool in self._tools.values()]

    def tool(self, name: str) -> McpTool | None:
        return self._tools.get(name)

    def status(self) -> list[tuple[str, str]]:
        """Each configured server and how it stands, for `cairn mcp list` and the TUI."""
        return [
            (name, server.problem or f"{len(server.tools)} tools")
            for name, server in self._servers.items()
        ]

    async def call(self, call: McpCall) -> ToolOutcome:
        """Run one call within the server's timeout; every failure is an "error" outcome."""
        server = self._servers.get(call.server)
        if server is None:
            return ToolOutcome("error", reason=f"there is no MCP server {call.server!r}")
        if server.problem is not None or server.client is None:
            return ToolOutcome(
                "error", reason=f"MCP server {call.server} is not running: {server.problem}"
            )
        timeout = server.config.timeout_s
        garbage = server.garbage
        request = asyncio.ensure_future(
            server.client.call_tool(call.tool, call.arguments, read_timeout_seconds=timeout)
        )
        broken = asyncio.ensure_future(garbage.wait())
        try:
            done, _ = await asyncio.wait(
                {request, broken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (request, broken):
                if not task.done():
                    task.cancel()
        where = f"MCP server {call.server}, tool {call.tool}"
        if request in done:
            return _outcome(request, where)
        if broken in done:
            return ToolOutcome(
                "error",
                reason=f"{where}: the server sent {server.garbage_text}, which is not "
                "JSON-RPC; the call was abandoned",
            )
        return ToolOutcome(
            "error", reason=f"{where}: no answer within {timeout:g} s; the call was abandoned"
        )

    async def stop(self) -> None:
        """Stop every server (each gets a few seconds to exit) and close their logs."""
        for server in self._servers.values():
            server.stop.set()
        tasks = [server.task for server in self._servers.values() if server.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    # ------------------------------------------------------------------ starting

    async def _start(self, server: _Server) -> None:
        server.task = asyncio.create_task(self._serve(server), name=f"mcp:{server.config.name}")
        try:
            await asyncio.wait_for(server.ready.wait(), server.config.start_timeout_s)
        except TimeoutError:
            server.problem = (
                f"it did not start and list its tools within {server.config.start_timeout_s:g} s"
            )
            server.stop.set()

    async def _serve(self, server: _Server) -> None:
        """Hold the server's SDK client for the session: it is entered and left in this one
        task, as the SDK requires."""
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client

        config = server.config
        parameters = StdioServerParameters(
            command=config.command,
            args=list(config.args),
            env=dict(config.env),
            cwd=config.cwd or str(self._cwd),
        )

        async def on_message(message: object) -> None:
            if isinstance(message, Exception):
                server.garbage_text = _unreadable(message)
                fired, server.garbage = server.garbage, asyncio.Event()
                fired.set()

        try:
            transport = stdio_client(parameters, errlog=self._log_for(config.name))
            async with Client(transport, message_handler=on_message, cache=None) as client:
                server.tools = await self._list_tools(client, config)
                server.client = client
                server.ready.set()
                await server.stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure is this server's, told once
            server.problem = server.problem or f"{config.describe()}: {describe_failure(exc)}"
        finally:
            if server.problem is None and not server.stop.is_set():
                server.problem = "it exited"
            server.client = None
            server.ready.set()

    async def _list_tools(self, client: Any, config: McpServerConfig) -> list[McpTool]:
        tools: list[McpTool] = []
        cursor: str | None = None
        while len(tools) < TOOLS_PER_SERVER:
            listing = await client.list_tools(cursor=cursor)
            tools += [
                tool
                for tool in (_as_tool(config.name, listed) for listed in listing.tools)
                if tool is not None
            ]
            cursor = listing.next_cursor
            if not cursor:
                break
        return tools[:TOOLS_PER_SERVER]

    def _index_tools(self, notes: list[str]) -> None:
        for server in self._servers.values():
            for tool in server.tools:
                if len(self._tools) >= TOOLS_PER_HELLO:
                    notes.append(f"MCP: more than {TOOLS_PER_HELLO} tools; the rest are left out")
                    return
                self._tools.setdefault(tool.offer.name, tool)

    def _log_for(self, name: str) -> TextIO:
        self._log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (self._log_dir / f"{name}.log").open("a", encoding="utf-8")
        self._logs.append(handle)
        return handle


def _as_tool(server: str, listed: Any) -> McpTool | None:
    """The tool as offered, or None when it cannot be (its schema is not an object, or is
    too large to send)."""
    schema = listed.input_schema
    problem = schema_problem(schema)
    if problem is not None:
        log.info("MCP server %s: tool %r left out: %s", server, listed.name, problem)
        return None
    description = (listed.description or listed.title or "")[:DESCRIPTION_LIMIT]
    try:
        offer = McpToolOffer(
            name=mcp_tool_name(server, listed.name),
            server=server,
            tool=listed.name,
            description=description,
            input_schema=schema,
        )
    except ValueError:
        return None
    return McpTool(server, listed.name, offer)


def check_arguments(tool: McpTool, arguments: dict[str, Any]) -> str | None:
    """Why `arguments` do not fit the tool's input schema, in one line; None when they do."""
    return check_schema(tool.offer.name, tool.offer.input_schema, arguments)


def _outcome(request: asyncio.Future[Any], where: str) -> ToolOutcome:
    """What the model is given of a finished call: its text (capped), or why it failed."""
    exc = request.exception()
    if exc is not None:
        return ToolOutcome("error", reason=f"{where}: {describe_failure(exc)}")
    result = request.result()
    text = result_text(result)
    if result.is_error:
        return ToolOutcome("error", content=text, reason=f"{where} reported an error")
    return ToolOutcome("ok", content=text)


def _unreadable(exc: Exception) -> str:
    """What the server sent that could not be read, quoted and short."""
    if isinstance(exc, ValidationError) and exc.errors():
        return repr(short(str(exc.errors()[0].get("input", "")), 120))
    return f"unreadable output ({short(str(exc), 120)})"
