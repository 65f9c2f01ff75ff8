"""The websocket endpoint: handshake, then client frames routed to the runtime.

Owns authentication of a connection, naming its client, the welcome, per-connection frame
handling (tool results never wait behind a cancel or a new message), and closing a client that
falls too far behind its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable

from cairn_protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Compact,
    ErrorEvent,
    FrameError,
    Hello,
    Ping,
    Pong,
    ServerEvent,
    ToolResult,
    UserMessage,
    Welcome,
    parse_client_frame,
)
from cairn_protocol.messages import (
    CLOSE_BAD_REQUEST,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_INTERNAL,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    ClientFrame,
    ErrorCode,
)
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from cairn_server.api.outbox import Outbox
from cairn_server.providers.base import ProviderError
from cairn_server.providers.catalog import ModelChoice
from cairn_server.runtime.history import build_history
from cairn_server.runtime.hub import Client, ConversationHub
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.models import Agent, Conversation
from cairn_server.storage.repository import describe_failure
from cairn_server.storage.store import RunInProgressError, TokenRefused

log = logging.getLogger(__name__)
router = APIRouter()

HELLO_TIMEOUT_S = 10.0
# How long a close may wait for the socket to take the frame (a client that fell behind
# gets it once it reads again).
CLOSE_WAIT_S = 30.0

BINARY_FRAME = "binary frames are not part of the protocol: send each frame as JSON text"

_connection_ids = itertools.count(1)

Session = tuple[Hello, Client, Agent, Conversation, ModelChoice]


class HandshakeRefused(Exception):
    def __init__(self, code: ErrorCode, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.close_code = close_code


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    await websocket.accept()
    connection = Connection(websocket, runtime)
    await connection.serve()


class Connection:
    """One client connection. Events go through a bounded outbox to a writer task, so
    publishing never waits on the network, and a client that falls too far behind is
    closed (CLOSE_TOO_SLOW) with everything queued for it dropped."""

    def __init__(self, websocket: WebSocket, runtime: Runtime) -> None:
        self.websocket = websocket
        self.runtime = runtime
        self.key = next(_connection_ids)
        self._outbox = Outbox(runtime.settings.ws_backlog_bytes)
        self._replaying = True  # until subscribed: the welcome and the replay asked for
        # Frames that may wait on a run (a new message supersedes it, a cancel stops it, and
        # both wait for its withdrawn calls) run here, in order, while tool results go on.
        self._in_order = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        hub: ConversationHub | None = None
        close: tuple[int, str] | None = None
        try:
            session, hub = await self._open()
            await self._read_until_dropped(session)
        except HandshakeRefused as refused:
            await self._enqueue(ErrorEvent(code=refused.code, message=refused.message))
            close = (refused.close_code, refused.message)
        except WebSocketDisconnect:
            pass
        finally:
            if hub is not None:
                self.runtime.detach(hub.conversation_id, self.key)
        if self._outbox.overflowed.is_set():
            writer.cancel()
            close = (CLOSE_TOO_SLOW, self._log_too_slow())
        self._outbox.close()
        await asyncio.gather(writer, return_exceptions=True)  # the refusal's error goes out
        if close is not None:
            code, reason = close
            reason = reason.encode()[:120].decode(errors="ignore")  # a close holds 123 bytes
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_WAIT_S)

    # ------------------------------------------------------------------ handshake

    async def _open(self) -> tuple[Session, ConversationHub]:
        """Handshake, welcome, replay and subscription; any failure becomes a refusal with
        an error frame, never a silent drop."""
        try:
            hello, agent, conversation, choice = await self._handshake()
            client = Client(hello.client_id or f"conn_{secrets.token_hex(8)}", hello.workspace.path)
            hub = await self.runtime.hub(conversation.id)
            hub.enter(self.key, client.id)
            if hello.mcp_tools:
                self.runtime.offer_mcp_tools(conversation.id, hello.mcp_tools)
            await self.runtime.resume_requests(conversation.id, client)
            welcome_seq = await self._send_welcome(agent, conversation, choice, hub, client)
            # Without resume_after the welcome's history covers the past; replaying from the
            # welcome's seq closes the gap between sending it and subscribing.
            resume = hello.resume_after if hello.resume_after is not None else welcome_seq
            await hub.attach(self.key, self._enqueue, resume)
        except (HandshakeRefused, WebSocketDisconnect):
            raise
        except Exception as exc:
            log.exception("opening a session failed")
            raise HandshakeRefused(
                "internal",
                f"the server could not open the session: {describe_failure(exc)}",
                CLOSE_INTERNAL,
            ) from exc
        self._replaying = False
        return (hello, client, agent, conversation, choice), hub

    async def _handshake(self) -> tuple[Hello, Agent, Conversation, ModelChoice]:
        try:
            raw = await asyncio.wait_for(self._receive(), HELLO_TIMEOUT_S)
        except TimeoutError:
            raise HandshakeRefused(
                "malformed_frame", "no hello frame within 10 s", CLOSE_HELLO_TIMEOUT
            ) from None
        if raw is None:
            raise HandshakeRefused("malformed_frame", BINARY_FRAME, CLOSE_BAD_REQUEST)
        try:
            frame = parse_client_frame(raw)
        except FrameError as exc:
            raise HandshakeRefused(exc.code, exc.message, CLOSE_BAD_REQUEST) from None
        if not isinstance(frame, Hello):
            raise HandshakeRefused(
                "malformed_frame",
                f"the first frame must be hello, not {frame.type}",
                CLOSE_BAD_REQUEST,
            )
        if frame.protocol_version != PROTOCOL_VERSION:
            raise HandshakeRefused(
                "bad_version",
                f"protocol version mismatch: the server speaks {PROTOCOL_VERSION}, "
                f"the client sent {frame.protocol_version}; update the older side",
                CLOSE_BAD_REQUEST,
            )
        store = self.runtime.store
        try:
            user = await store.authenticate(frame.token)
        except TokenRefused as refused:
            raise HandshakeRefused("unauthorized", str(refused), CLOSE_UNAUTHORIZED) from None
        agent = await self.runtime.agent_for(user.id, frame.workspace)
        conversation = await self._conversation(agent, frame.conversation)
        if frame.interactive and agent.interactive_conversation_id != conversation.id:
            await store.set_interactive_conversation(agent.id, conversation.id)
        choice = await self.runtime.catalog.choose(agent.model)
        return frame, agent, conversation, choice

    async def _conversation(self, agent: Agent, wanted: str) -> Conversation:
        """The conversation a hello asks for; "reopen" is the one the person last had open
        in the TUI (so `cairn -p` runs in between do not take it over)."""
        store = self.runtime.store
        if wanted == "new":
            return await store.create_conversation(agent.id)
        if wanted == "reopen":
            reopened = await store.interactive_conversation(agent.id)
            if reopened is not None:
                return reopened
            wanted = "latest"
        if wanted == "latest":
            latest = await store.latest_conversation(agent.id)
            return latest or await store.create_conversation(agent.id)
        found = await store.get_conversation(wanted)
        if found is None or found.agent_id != agent.id:
            raise HandshakeRefused(
                "malformed_frame",
                f"no conversation {wanted!r} for this codebase",
                CLOSE_NOT_FOUND,
            )
        return found

    async def _send_welcome(
        self,
        agent: Agent,
        conversation: Conversation,
        choice: ModelChoice,
        hub: ConversationHub,
        client: Client,
    ) -> int:
        store = self.runtime.store
        await hub.catch_up()  # what other server processes stored since this hub's newest
        messages = await store.list_messages(conversation.id)
        records = await store.tool_calls_of_conversation(conversation.id)
        approvals = await store.approvals_of_conversation(conversation.id)
        pending = await self.runtime.pending_requests(conversation.id)
        unknown = await self.runtime.unknown_outcomes(conversation.id)
        seq = hub.last_seq
        usage = await store.usage_through(conversation.id, seq)
        context = await store.context_through(conversation.id, seq)
        await self._enqueue(
            Welcome(
                seq=seq,
                agent_id=agent.id,
                conversation_id=conversation.id,
                model=choice.model,
                model_problem=choice.problem,
                model_not_offered=choice.not_offered,
                history=build_history(messages, records, approvals),
                running_run_id=self.runtime.running_run_id(conversation.id),
                client_id=client.id,
                pending_tool_requests=pending,
                unknown_outcomes=unknown,
                usage=usage,
                context=context,
            )
        )
        return seq

    # ------------------------------------------------------------------ frames

    async def _read_until_dropped(self, session: Session) -> None:
        """Handle the client's frames until it disconnects or its outbox overflows."""
        reading = asyncio.create_task(self._read_loop(session))
        dropped = asyncio.create_task(self._outbox.overflowed.wait())
        try:
            await asyncio.wait({reading, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()
            dropped.cancel()
            await asyncio.gather(reading, dropped, return_exceptions=True)
        if not reading.cancelled() and (failure := reading.exception()) is not None:
            raise failure

    async def _receive(self) -> str | None:
        """The next frame's text; None for a binary frame. WebSocketDisconnect at the end."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text: str | None = message.get("text")
        return text

    async def _read_loop(self, session: Session) -> None:
        while True:
            raw = await self._receive()
            if raw is None:
                await self._error("malformed_frame", BINARY_FRAME)
                continue
            try:
                frame = parse_client_frame(raw)
            except FrameError as exc:
                await self._error(exc.code, exc.message)
                continue
            handling = self._handle_safely(frame, session)
            if isinstance(frame, UserMessage | Cancel | Compact):
                task = asyncio.create_task(self._after_earlier(handling))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            else:
                await handling

    async def _after_earlier(self, handling: Awaitable[None]) -> None:
        async with self._in_order:
            await handling

    async def _handle_safely(self, frame: ClientFrame, session: Session) -> None:
        try:
            await self._handle(frame, session)
        except Exception as exc:  # one bad frame must not end the connection
            log.exception("frame %s failed", frame.type)
            await self._error("internal", f"the server failed on a {frame.type} frame: {exc!r}")

    async def _handle(self, frame: ClientFrame, session: Session) -> None:
        hello, client, agent, conversation, choice = session
        if isinstance(frame, UserMessage | Compact):  # the model may have changed (/model)
            agent, choice = await self._agent_now(agent)
        if isinstance(frame, UserMessage):
            if choice.model is None:
                await self._error("no_model", choice.problem or "no model is configured")
                return
            try:
                await self.runtime.start_run(
                    agent,
                    conversation.id,
                    choice.model,
                    frame.text,
                    hello.tools,
                    client,
                    frame.command,
                    frame.notes,
                    hello.mcp_tools,
                )
            except ProviderError as exc:
                await self._error("no_model", str(exc))
            except RunInProgressError as exc:  # a helper runs there, or another process's run
                await self._error("run_in_progress", str(exc))
        elif isinstance(frame, ToolResult):
            refused = await self.runtime.submit_tool_result(conversation.id, frame, client.id)
            if refused is not None:
                await self._error(*refused)
        elif isinstance(frame, Cancel):
            await self.runtime.cancel(conversation.id, frame.reason)
        elif isinstance(frame, Compact):
            await self._compact(frame, hello, agent, conversation, choice)
        elif isinstance(frame, Ping):
            await self._enqueue(Pong(nonce=frame.nonce))
        elif isinstance(frame, Hello):
            await self._error("malformed_frame", "hello was already received on this connection")

    async def _agent_now(self, agent: Agent) -> tuple[Agent, ModelChoice]:
        """The agent as stored now and the model it uses: a PATCH (`/model`) since the hello
        counts from the next message of every open connection."""
        current = await self.runtime.store.get_agent(agent.id) or agent
        return current, self.runtime.catalog.resolve(current.model)

    async def _compact(
        self,
        frame: Compact,
        hello: Hello,
        agent: Agent,
        conversation: Conversation,
        choice: ModelChoice,
    ) -> None:
        try:
            compaction = await self.runtime.compact(
                agent,
                conversation.id,
                choice.model,
                hello.tools,
                frame.instructions,
                hello.mcp_tools,
            )
        except RunInProgressError as exc:
            await self._error("run_in_progress", str(exc))
            return
        if compaction is None:
            await self._error(
                "nothing_to_compact",
                "nothing to compact yet: the conversation holds only its latest exchange",
            )

    # ------------------------------------------------------------------ writing

    async def _enqueue(self, event: ServerEvent) -> None:
        """The hub's delivery to this client: queued, never awaited on the network."""
        self._outbox.put(event.model_dump_json(), bounded=not self._replaying)

    async def _error(self, code: ErrorCode, message: str) -> None:
        await self._enqueue(ErrorEvent(code=code, message=message))

    async def _write_loop(self) -> None:
        while (queued := await self._outbox.next()) is not None:
            frame, bounded = queued
            try:
                await self.websocket.send_text(frame)
            except Exception:  # the client went away; the events stay in the replay log
                return
            self._outbox.written(frame, bounded)

    def _log_too_slow(self) -> str:
        """Log that this client fell behind; the reason its close gives."""
        limit = f"{self._outbox.limit / 2**20:g} MiB"
        log.warning("connection %d fell more than %s behind its events; closed", self.key, limit)
        return f"too slow: more than {limit} of events waited for this client; reconnect"
