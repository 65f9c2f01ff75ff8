"""The server's durable state behind one async API: users, agents, conversations, runs, events.

Owns every read and write of the tables in models.py; each method is its own transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from datetime import timedelta
from typing import Any, Literal, TypeVar, get_args

from cairn_protocol import (
    ContextCompacted,
    RunFinished,
    ServerEvent,
    Usage,
    WorkspaceIdentity,
    dump_frame,
    parse_server_frame,
)
from cairn_protocol.messages import (
    TRANSIENT_EVENT_TYPES,
    ApprovalRecord,
    ContextUse,
    StopReason,
)
from sqlalchemy import func, update
from sqlalchemy import text as sa_text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from cairn_server.domain import STORED_ROLES, ModelMessage, ToolCall
from cairn_server.errors import CairnServerError
from cairn_server.storage.models import (
    Agent,
    AgentAlias,
    AgentMcpServer,
    ApiToken,
    Conversation,
    Event,
    Message,
    ModelProfile,
    Run,
    RunApproval,
    RunStep,
    ToolCallRecord,
    User,
    utcnow,
)
from cairn_server.storage.repository import (
    NotFoundError,
    Repository,
    first,
    get_or_raise,
    updated_rows,
)

TOKEN_PREFIX = "cairn_"
# Keys of a checkout without a commit (WorkspaceIdentity.key): the only ones an agent moves from.
PROVISIONAL_KEY_PREFIXES = ("path:", "origin:")
TITLE_LIMIT = 60  # characters of a conversation's title, cut at a word boundary
# How a call can end: the executor's answer, or "unknown" when the server stopped waiting
# without one (a later answer can still settle an unknown call).
SETTLED_STATUSES = ("ok", "error", "denied", "unknown")
STOP_REASONS: tuple[str, ...] = get_args(StopReason)

T = TypeVar("T")
E = TypeVar("E", bound=ServerEvent)


# The PostgreSQL channel on which a committed event is announced to every server process.
EVENTS_CHANNEL = "cairn_events"
# The channel on which a server process asks the others to act on their runs (a cancel).
CONTROL_CHANNEL = "cairn_control"
_NOTIFY = sa_text(f"SELECT pg_notify('{EVENTS_CHANNEL}', :payload)")


class RunInProgressError(CairnServerError, RuntimeError):
    """The conversation has a run going; the message says what to do."""


class TokenRefused(CairnServerError, PermissionError):
    """A token that opens no session; the message says why (unknown, revoked, expired)."""


def hash_token(plaintext: str) -> str:
    """The SHA-256 hex digest under which a token is stored (the plaintext never is)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def to_model_message(message: Message) -> ModelMessage:
    """A stored message back in the provider-neutral form the runtime sends to models."""
    if message.role not in STORED_ROLES:
        raise ValueError(f"message {message.id} has unknown role {message.role!r}")
    if message.role == "event":  # a note from the system, e.g. a memory change made elsewhere
        return ModelMessage(role="user", content=message.content, note=True)
    return ModelMessage(
        role=message.role,
        content=message.content,
        tool_calls=stored_tool_calls(message),
        tool_call_id=message.tool_call_id,
        is_error=message.is_error,
    )


def stored_tool_calls(message: Message) -> tuple[ToolCall, ...]:
    """The tool calls a stored message made, their arguments parsed once."""
    return tuple(
        ToolCall(id=str(call["id"]), name=str(call["name"]), arguments=str(call["arguments"]))
        for call in message.tool_calls or []
    )


class Store(Repository):
    """Durable state for the server. Every method runs in its own transaction."""

    to_model_message = staticmethod(to_model_message)

    # ------------------------------------------------------------------ users and tokens

    async def ensure_user(self, name: str) -> User:
        """The user called `name`, created if missing."""
        if not name.strip():
            raise ValueError("a user name must not be empty")
        return await self._find_or_create(
            lambda s: first(s, select(User).where(User.name == name)),
            lambda: User(name=name),
        )

    async def create_token(
        self, user_name: str, label: str = "", expires_in: timedelta | None = None
    ) -> str:
        """A new API token for `user_name` (created if missing), valid for `expires_in` (None:
        until revoked); the plaintext is returned once."""
        user = await self.ensure_user(user_name)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = utcnow() + expires_in if expires_in is not None else None
        async with self._transaction() as session:
            session.add(
                ApiToken(
                    user_id=user.id,
                    token_hash=hash_token(plaintext),
                    label=label,
                    expires_at=expires_at,
                )
            )
        return plaintext

    async def add_token(self, user_name: str, plaintext: str, label: str = "") -> None:
        """Register a token chosen elsewhere (the embedded server's); a no-op if already there
        (a revoked one stays revoked)."""
        if not plaintext:
            raise ValueError("a token must not be empty")
        user = await self.ensure_user(user_name)
        token_hash = hash_token(plaintext)
        token = await self._find_or_create(
            lambda s: first(s, select(ApiToken).where(ApiToken.token_hash == token_hash)),
            lambda: ApiToken(user_id=user.id, token_hash=token_hash, label=label),
        )
        if token.user_id != user.id:
            raise ValueError(f"this token is already registered to another user, not {user_name!r}")

    async def authenticate(self, plaintext: str) -> User:
        """The user a token belongs to; records when the token was last used.

        Raises TokenRefused, saying why, for an unknown, revoked or expired token. The token
        is looked up by its hash, so no comparison ever runs on the secret itself.
        """
        token_hash = hash_token(plaintext)
        async with self._transaction() as session:
            token = await first(session, select(ApiToken).where(ApiToken.token_hash == token_hash))
            if token is None:
                raise TokenRefused("invalid or missing token")
            now = utcnow()
            state = token.state(now)
            if state == "revoked":
                raise TokenRefused(
                    f"this token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC"
                )
            if state == "expired":
                raise TokenRefused(f"this token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC")
            token.last_used_at = now
            return await get_or_raise(session, User, token.user_id)

    async def list_tokens(self, user_name: str | None = None) -> list[tuple[ApiToken, User]]:
        """Every token (of one user when given) with its user, oldest first."""
        query = (
            select(ApiToken, User)
            .join(User, col(User.id) == col(ApiToken.user_id))
            .order_by(col(ApiToken.created_at), col(ApiToken.id))
        )
        if user_name is not None:
            query = query.where(User.name == user_name)
        async with self._transaction(read_only=True) as session:
            return [(token, user) for token, user in (await session.exec(query)).all()]

    async def revoke_token(self, token: str) -> ApiToken:
        """Revoke a token, named by its id (`tok_…`) or its plaintext; revoking twice keeps
        the first time. NotFoundError if no token matches."""
        matches = (col(ApiToken.id) == token) | (col(ApiToken.token_hash) == hash_token(token))
        async with self._transaction() as session:
            found = await first(session, select(ApiToken).where(matches))
            if found is None:  # the argument may be a secret: it is not repeated
                raise NotFoundError("no token has that id or value; see `cairn-server tokens list`")
            if found.revoked_at is None:
                found.revoked_at = utcnow()
            return found

    # ------------------------------------------------------------------ agents

    async def get_or_create_agent(
        self,
        user_id: str,
        workspace: WorkspaceIdentity,
        context_budget: int | None = None,
    ) -> Agent:
        """The user's agent for this codebase (keyed by `workspace.key`, or a key it had before),
        created on first use (with `context_budget`, the server's default at that time).

        `moved_from`: keys the checkout had before its first commit (hello's). When no agent has
        the new key yet, the agent of the first of them still under it moves to the new key
        (memory, conversations and all), and the old key stays an alias of it."""
        key = workspace.key
        found = await self._agent_by_key(user_id, key)
        if found is not None:
            return found
        if workspace.root_commit:
            for old in workspace.moved_from:
                moved = await self._move_agent(user_id, old, workspace)
                if moved is not None:
                    return moved
        return await self._find_or_create(
            lambda s: agent_by_key(s, user_id, key),
            lambda: Agent(
                user_id=user_id,
                codebase_key=key,
                display_name=workspace.display_name,
                origin=workspace.origin,
                context_budget=context_budget,
            ),
        )

    async def _agent_by_key(self, user_id: str, key: str) -> Agent | None:
        async with self._transaction(read_only=True) as session:
            return await agent_by_key(session, user_id, key)

    async def _move_agent(
        self, user_id: str, old_key: str, workspace: WorkspaceIdentity
    ) -> Agent | None:
        """Re-key the agent still under `old_key` (never one a root commit names: two histories
        are two codebases) to the workspace's key; None when there is none to move, or when
        another client has just given the new key an agent (which is then the one found)."""
        if not old_key.startswith(PROVISIONAL_KEY_PREFIXES) or old_key == workspace.key:
            return None
        statement = (
            update(Agent)
            .where(col(Agent.user_id) == user_id, col(Agent.codebase_key) == old_key)
            .values(codebase_key=workspace.key, origin=workspace.origin)
            .returning(Agent)
        )
        try:
            async with self._transaction() as session:
                moved = await updated_rows(session, statement)
                if not moved:
                    return None
                session.add(AgentAlias(user_id=user_id, codebase_key=old_key, agent_id=moved[0].id))
                return moved[0]
        except IntegrityError:  # the new key was taken meanwhile: that agent is the one
            return None

    async def set_agent_model(self, agent_id: str, model: str | None) -> Agent:
        """Set (or with None, clear) the model this agent uses instead of the server default."""
        async with self._transaction() as session:
            agent = await get_or_raise(session, Agent, agent_id)
            agent.model = model
            return agent

    async def set_agent_budget(self, agent_id: str, budget: int | None) -> Agent:
        """The agent's own context budget; None returns it to CAIRN_CONTEXT_BUDGET."""
        async with self._transaction() as session:
            agent = await get_or_raise(session, Agent, agent_id)
            agent.context_budget = budget
            return agent

    async def mcp_servers(self, agent_id: str) -> list[AgentMcpServer]:
        """The agent's streamable-HTTP MCP servers, by name."""
        query = (
            select(AgentMcpServer)
            .where(AgentMcpServer.agent_id == agent_id)
            .order_by(col(AgentMcpServer.name))
        )
        return await self._all(query)

    async def put_mcp_server(
        self, agent_id: str, name: str, url: str, headers: dict[str, str], timeout_s: float
    ) -> AgentMcpServer:
        """Add the agent's MCP server `name`, or replace what it was."""
        async with self._transaction() as session:
            query = select(AgentMcpServer).where(
                AgentMcpServer.agent_id == agent_id, AgentMcpServer.name == name
            )
            server = (await session.exec(query)).first()
            if server is None:
                server = AgentMcpServer(agent_id=agent_id, name=name, url=url)
            server.url, server.headers, server.timeout_s = url, dict(headers), timeout_s
            session.add(server)
            return server

    async def unsealed_mcp_servers(self, sealed_prefix: str) -> list[AgentMcpServer]:
        """Every agent's MCP servers with a header value stored before sealing existed."""
        rows = await self._all(select(AgentMcpServer))
        return [
            row
            for row in rows
            if any(not value.startswith(sealed_prefix) for value in row.headers.values())
        ]

    async def set_mcp_headers(self, server_id: str, headers: dict[str, str]) -> None:
        """Store the MCP server's headers as given (sealed by the caller)."""
        async with self._transaction() as session:
            server = await session.get(AgentMcpServer, server_id)
            if server is not None:
                server.headers = dict(headers)
                session.add(server)

    async def delete_mcp_server(self, agent_id: str, name: str) -> bool:
        """Remove the agent's MCP server `name`; False when it had none of that name."""
        async with self._transaction() as session:
            query = select(AgentMcpServer).where(
                AgentMcpServer.agent_id == agent_id, AgentMcpServer.name == name
            )
            server = (await session.exec(query)).first()
            if server is None:
                return False
            await session.delete(server)
            return True

    async def get_agent(self, agent_id: str) -> Agent | None:
        async with self._transaction(read_only=True) as session:
            return await session.get(Agent, agent_id)

    async def list_agents(self, user_id: str) -> list[Agent]:
        """The user's agents, oldest first."""
        query = select(Agent).where(Agent.user_id == user_id).order_by(col(Agent.created_at))
        return await self._all(query)

    # ------------------------------------------------------------------ conversations

    async def create_conversation(
        self, agent_id: str, title: str = "", parent_id: str | None = None
    ) -> Conversation:
        """A new conversation; `parent_id` makes it a helper of that conversation."""
        async with self._transaction() as session:
            await get_or_raise(session, Agent, agent_id)
            conversation = Conversation(agent_id=agent_id, title=title, parent_id=parent_id)
            session.add(conversation)
            return conversation

    async def latest_conversation(self, agent_id: str) -> Conversation | None:
        """The agent's most recently updated conversation that is not a helper's, or None."""
        query = _conversations_of(agent_id).where(col(Conversation.parent_id).is_(None))
        async with self._transaction(read_only=True) as session:
            return await first(session, query.limit(1))

    async def interactive_conversation(self, agent_id: str) -> Conversation | None:
        """The conversation the person last had open in the TUI, if it still exists."""
        async with self._transaction(read_only=True) as session:
            agent = await get_or_raise(session, Agent, agent_id)
            if agent.interactive_conversation_id is None:
                return None
            return await session.get(Conversation, agent.interactive_conversation_id)

    async def set_interactive_conversation(self, agent_id: str, conversation_id: str) -> None:
        """Record the conversation the TUI has open: the one it reopens next time."""
        async with self._transaction() as session:
            agent = await get_or_raise(session, Agent, agent_id)
            agent.interactive_conversation_id = conversation_id

    async def message_counts(self, conversation_ids: list[str]) -> dict[str, int]:
        """How many user and assistant messages each conversation holds (what its history
        shows; tool results and events are not counted)."""
        if not conversation_ids:
            return {}
        query = (
            select(col(Message.conversation_id), func.count())
            .where(
                col(Message.conversation_id).in_(conversation_ids),
                col(Message.role).in_(("user", "assistant")),
            )
            .group_by(col(Message.conversation_id))
        )
        async with self._transaction(read_only=True) as session:
            counts = {cid: int(n) for cid, n in (await session.exec(query)).all()}
        return {cid: counts.get(cid, 0) for cid in conversation_ids}

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        async with self._transaction(read_only=True) as session:
            return await session.get(Conversation, conversation_id)

    async def list_conversations(self, agent_id: str) -> list[Conversation]:
        """The agent's conversations, most recently updated first."""
        return await self._all(_conversations_of(agent_id))

    # ------------------------------------------------------------------ messages

    async def add_message(
        self, conversation_id: str, run_id: str | None, message: ModelMessage
    ) -> Message:
        """Store one model-facing message at the end of the conversation."""
        row = Message(
            conversation_id=conversation_id,
            run_id=run_id,
            role=message.role,
            content=message.content,
            tool_calls=[
                {"id": call.id, "name": call.name, "arguments": call.arguments}
                for call in message.tool_calls
            ],
            tool_call_id=message.tool_call_id,
            is_error=message.is_error,
        )
        return await self._insert_message(conversation_id, row)

    async def _insert_message(self, conversation_id: str, row: Message) -> Message:
        """Store the message and touch the conversation's last activity; its first user
        message also gives an untitled conversation its title."""
        async with self._transaction() as session:
            touched = await session.exec(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(updated_at=utcnow())
            )
            if touched.rowcount == 0:
                raise NotFoundError(f"no conversation {conversation_id!r}")
            title = conversation_title(row.content) if row.role == "user" else ""
            if title:
                await session.exec(
                    update(Conversation)
                    .where(col(Conversation.id) == conversation_id, col(Conversation.title) == "")
                    .values(title=title)
                )
            session.add(row)
            await session.flush()  # assigns row.id, which orders the conversation
            return row

    async def add_event_message(
        self, conversation_id: str, run_id: str | None, text: str
    ) -> Message:
        """A system note appended to the conversation (the model reads it as a user turn)."""
        return await self._insert_message(
            conversation_id,
            Message(conversation_id=conversation_id, run_id=run_id, role="event", content=text),
        )

    async def list_messages(self, conversation_id: str, after: int = 0) -> list[Message]:
        """The conversation's messages in the order they were added; with `after`, only
        those with a larger id (the ones not compacted away)."""
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id, col(Message.id) > after)
            .order_by(col(Message.id))
        )
        return await self._all(query)

    async def message_ids(self, conversation_id: str, after: int = 0) -> list[int]:
        """The ids of list_messages(conversation_id, after), in order: what a cache of the
        messages checks itself against (cheap: no rows are built)."""
        query = (
            select(col(Message.id))
            .where(Message.conversation_id == conversation_id, col(Message.id) > after)
            .order_by(col(Message.id))
        )
        return [message_id for message_id in await self._all(query) if message_id is not None]

    async def compact_conversation(
        self, conversation_id: str, summary: str, compacted_through: int
    ) -> None:
        """Replace the summary and move the compaction mark (it never moves back)."""
        async with self._transaction() as session:
            conversation = await get_or_raise(session, Conversation, conversation_id)
            conversation.summary = summary
            conversation.compacted_through = max(conversation.compacted_through, compacted_through)

    # ------------------------------------------------------------------ events (replay log)

    async def append_event(self, conversation_id: str, event: E) -> E:
        """Give a durable event the conversation's next seq, store it, and return it with that seq.

        The seq is taken with an UPDATE ... RETURNING on the conversation row, which holds the
        row lock (PostgreSQL) or the write lock (SQLite) until commit, so concurrent appends
        get distinct, consecutive seqs. On PostgreSQL the commit also notifies every server
        process listening on EVENTS_CHANNEL (`conversation_id:seq`), so replicas deliver it.
        """
        event_type = _event_type(event)
        async with self._transaction() as session:
            result = await session.exec(
                update(Conversation)
                .where(col(Conversation.id) == conversation_id)
                .values(last_seq=col(Conversation.last_seq) + 1)
                .returning(col(Conversation.last_seq))
            )
            seq: int | None = result.scalar_one_or_none()
            if seq is None:
                raise NotFoundError(f"no conversation {conversation_id!r}")
            stamped = event.model_copy(update={"seq": seq})
            if self.dialect == "postgresql":  # sent by PostgreSQL at commit, never before
                connection = await session.connection()
                await connection.execute(_NOTIFY, {"payload": f"{conversation_id}:{seq}"})
            session.add(
                Event(
                    conversation_id=conversation_id,
                    seq=seq,
                    type=event_type,
                    payload=dump_frame(stamped),
                )
            )
        return stamped

    async def events_after(self, conversation_id: str, seq: int) -> list[ServerEvent]:
        """The durable events with a seq greater than `seq`, in order, as they were sent."""
        query = (
            select(Event)
            .where(Event.conversation_id == conversation_id, col(Event.seq) > seq)
            .order_by(col(Event.seq))
        )
        return [parse_server_frame(row.payload) for row in await self._all(query)]

    async def usage_through(self, conversation_id: str, seq: int) -> Usage:
        """Tokens and cost of the conversation's runs whose run_finished event has a seq up to
        `seq`: exactly what a client that is sent later events has not yet counted."""
        query = select(Event).where(
            Event.conversation_id == conversation_id,
            Event.type == "run_finished",
            col(Event.seq) <= seq,
        )
        total = Usage()
        for row in await self._all(query):
            finished = parse_server_frame(row.payload)
            if isinstance(finished, RunFinished):
                total = total + finished.usage
        return total

    async def context_through(self, conversation_id: str, seq: int) -> ContextUse | None:
        """How full the context was after the conversation's last model call, or after its
        last compaction up to `seq` when that came later; None before either (or when the
        last call was stored without its budget)."""
        last_step = (
            select(RunStep)
            .join(Run, col(Run.id) == col(RunStep.run_id))
            .where(Run.conversation_id == conversation_id)
            .order_by(col(RunStep.created_at).desc(), col(RunStep.id).desc())
            .limit(1)
        )
        last_compaction = (
            select(Event)
            .where(
                Event.conversation_id == conversation_id,
                Event.type == "context_compacted",
                col(Event.seq) <= seq,
            )
            .order_by(col(Event.seq).desc())
            .limit(1)
        )
        async with self._transaction(read_only=True) as session:
            step = await first(session, last_step)
            compaction = await first(session, last_compaction)
        if compaction is not None and (step is None or compaction.created_at > step.created_at):
            compacted = parse_server_frame(compaction.payload)
            if isinstance(compacted, ContextCompacted):
                return ContextUse(tokens=compacted.tokens_after, budget=compacted.context_budget)
        if step is None or step.context_budget is None:
            return None
        return ContextUse(tokens=step.context_tokens, budget=step.context_budget)

    async def ping(self) -> None:
        """One round trip to the database; raises when it cannot be reached."""
        async with self._transaction(read_only=True) as session:
            connection = await session.connection()
            await connection.execute(sa_text("SELECT 1"))

    async def last_seq(self, conversation_id: str) -> int:
        """The seq of the conversation's newest durable event (0 before the first)."""
        async with self._transaction(read_only=True) as session:
            conversation = await get_or_raise(session, Conversation, conversation_id)
            return conversation.last_seq

    # ------------------------------------------------------------------ runs

    async def create_run(self, conversation_id: str, model: str, owner: str | None = None) -> Run:
        """A new running run of the server process `owner`; RunInProgressError while the
        conversation has one (the database holds one per conversation, so a run another
        server process started counts too)."""
        try:
            async with self._transaction() as session:
                await get_or_raise(session, Conversation, conversation_id)
                run = Run(conversation_id=conversation_id, model=model, owner=owner)
                session.add(run)
            return run
        except IntegrityError as exc:
            if not await self.running_runs(conversation_id):
                raise
            raise RunInProgressError(
                "a run is already going in this conversation (started through another server "
                "process); wait for it to finish or cancel it, then send this again"
            ) from exc

    async def record_step(
        self,
        run_id: str,
        usage: Usage,
        context_tokens: int = 0,
        context_budget: int | None = None,
    ) -> Run:
        """Count one model call of the run: its own row (with how full its context was), and
        its tokens and cost added up."""
        statement = (
            update(Run)
            .where(col(Run.id) == run_id)
            .values(
                steps=col(Run.steps) + 1,
                input_tokens=col(Run.input_tokens) + usage.input_tokens,
                cached_input_tokens=col(Run.cached_input_tokens) + usage.cached_input_tokens,
                output_tokens=col(Run.output_tokens) + usage.output_tokens,
                cost_usd=col(Run.cost_usd) + usage.cost_usd,
            )
            .returning(Run)
        )
        async with self._transaction() as session:
            updated = await updated_rows(session, statement)
            if not updated:
                raise NotFoundError(f"no run {run_id!r}")
            run = updated[0]
            session.add(
                RunStep(
                    run_id=run_id,
                    step=run.steps,
                    model=run.model,
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=usage.cost_usd,
                    context_tokens=context_tokens,
                    context_budget=context_budget,
                )
            )
            return run

    async def model_profiles(self) -> list[ModelProfile]:
        """What every model's server taught: learned budgets and token ratios."""
        return await self._all(select(ModelProfile))

    async def save_model_profile(self, model: str, **learned: int | float | None) -> None:
        """Keep what `model`'s server taught (ModelProfile's fields; the last writer wins)."""
        values: dict[str, Any] = {**learned, "updated_at": utcnow()}
        for _attempt in range(2):  # a concurrent first insert of the same model: update it
            try:
                async with self._transaction() as session:
                    row = await session.get(ModelProfile, model)
                    if row is None:
                        session.add(ModelProfile(model=model, **values))
                    else:
                        for name, value in values.items():
                            setattr(row, name, value)
                        session.add(row)
                return
            except IntegrityError:
                continue

    async def list_steps(self, run_id: str) -> list[RunStep]:
        return await self._all(
            select(RunStep).where(RunStep.run_id == run_id).order_by(col(RunStep.step))
        )

    async def list_runs(self, conversation_id: str) -> list[Run]:
        """The conversation's runs, oldest first."""
        return await self._all(
            select(Run)
            .where(Run.conversation_id == conversation_id)
            .order_by(col(Run.created_at), col(Run.id))
        )

    async def finish_run(self, run_id: str, stop_reason: str, detail: str | None = None) -> Run:
        """Mark the run finished; a run already finished is returned unchanged."""
        if stop_reason not in STOP_REASONS:
            raise ValueError(
                f"unknown stop reason {stop_reason!r}; expected one of {', '.join(STOP_REASONS)}"
            )
        statement = (
            update(Run)
            .where(col(Run.id) == run_id, col(Run.status) == "running")
            .values(status="finished", stop_reason=stop_reason, detail=detail, finished_at=utcnow())
            .returning(Run)
        )
        async with self._transaction() as session:
            updated = await updated_rows(session, statement)
            return updated[0] if updated else await get_or_raise(session, Run, run_id)

    async def running_runs(self, conversation_id: str | None = None) -> list[Run]:
        """Runs not yet finished, oldest first; of one conversation when given."""
        query = select(Run).where(Run.status == "running").order_by(col(Run.created_at))
        if conversation_id is not None:
            query = query.where(Run.conversation_id == conversation_id)
        return await self._all(query)

    async def interrupt_running_runs(
        self, reason: str, run_ids: Collection[str] | None = None
    ) -> list[Run]:
        """Finish the running runs (`run_ids` of them, or all) whose process is gone; the
        tool calls they were waiting on get an unknown outcome with `reason` (they may have
        run in the client meanwhile).

        Returns the runs it finished (stop_reason "server_restart").
        """
        now = utcnow()
        which = col(Run.status) == "running"
        if run_ids is not None:
            which = which & col(Run.id).in_(list(run_ids))
        async with self._transaction() as session:
            runs = await updated_rows(
                session,
                update(Run)
                .where(which)
                .values(status="finished", stop_reason="server_restart", finished_at=now)
                .returning(Run),
            )
            if runs:
                await session.exec(
                    update(ToolCallRecord)
                    .where(
                        col(ToolCallRecord.run_id).in_([run.id for run in runs]),
                        col(ToolCallRecord.status) == "pending",
                    )
                    .values(status="unknown", reason=reason, settled_at=now)
                )
            return runs

    async def get_run(self, run_id: str) -> Run | None:
        async with self._transaction(read_only=True) as session:
            return await session.get(Run, run_id)

    # ------------------------------------------------------------------ tool calls

    async def create_tool_call(
        self,
        conversation_id: str,
        run_id: str,
        model_call_id: str,
        tool: str,
        arguments: dict[str, Any],
    ) -> ToolCallRecord:
        """Record a pending client tool request; its `id` is the wire call_id."""
        async with self._transaction() as session:
            run = await get_or_raise(session, Run, run_id)
            if run.conversation_id != conversation_id:
                raise ValueError(f"run {run_id!r} is not in conversation {conversation_id!r}")
            record = ToolCallRecord(
                conversation_id=conversation_id,
                run_id=run_id,
                model_call_id=model_call_id,
                tool=tool,
                arguments=arguments,
            )
            session.add(record)
            return record

    async def settle_tool_call(
        self,
        call_id: str,
        status: str,
        content: str,
        reason: str | None,
        approval: ApprovalRecord | None = None,
        *,
        was: Literal["pending", "unknown"] = "pending",
    ) -> ToolCallRecord | None:
        """Settle a call that is `was` (pending; or of unknown outcome, for a late answer) and
        return it; None (and no change) if there is no such call in that state.

        Settling is a single conditional UPDATE, so of two racing results only one wins; the
        winner's `approval` is stored with the run in the same transaction.
        """
        if status not in SETTLED_STATUSES:
            expected = ", ".join(SETTLED_STATUSES)
            raise ValueError(f"unknown tool call status {status!r}; expected one of {expected}")
        statement = (
            update(ToolCallRecord)
            .where(col(ToolCallRecord.id) == call_id, col(ToolCallRecord.status) == was)
            .values(status=status, content=content, reason=reason, settled_at=utcnow())
            .returning(ToolCallRecord)
        )
        async with self._transaction() as session:
            updated = await updated_rows(session, statement)
            if not updated:
                return None
            if approval is not None:
                session.add(_approval_row(updated[0], approval))
            return updated[0]

    async def list_approvals(self, run_id: str) -> list[RunApproval]:
        """How each of the run's tool calls was decided, oldest decision first."""
        return await self._all(
            select(RunApproval)
            .where(RunApproval.run_id == run_id)
            .order_by(col(RunApproval.decided_at), col(RunApproval.id))
        )

    async def get_tool_call(self, call_id: str) -> ToolCallRecord | None:
        async with self._transaction(read_only=True) as session:
            return await session.get(ToolCallRecord, call_id)

    async def pending_tool_calls(self, conversation_id: str) -> list[ToolCallRecord]:
        """The conversation's unanswered tool requests, oldest first."""
        return await self._all(_calls_of(conversation_id, "pending"))

    async def unknown_tool_calls(self, conversation_id: str, limit: int) -> list[ToolCallRecord]:
        """The conversation's newest `limit` calls of unknown outcome, oldest first."""
        newest = await self._all(
            _calls_of(conversation_id, "unknown", newest_first=True).limit(limit)
        )
        return newest[::-1]

    async def tool_calls_of_conversation(self, conversation_id: str) -> list[ToolCallRecord]:
        """Every client tool call of a conversation, oldest first (for its history)."""
        query = (
            select(ToolCallRecord)
            .where(ToolCallRecord.conversation_id == conversation_id)
            .order_by(col(ToolCallRecord.created_at))
        )
        return await self._all(query)

    async def approvals_of_conversation(self, conversation_id: str) -> list[RunApproval]:
        """How each client tool call of a conversation was decided, oldest decision first."""
        return await self._all(
            select(RunApproval)
            .where(RunApproval.conversation_id == conversation_id)
            .order_by(col(RunApproval.decided_at), col(RunApproval.id))
        )

    async def tool_calls_of_run(self, run_id: str) -> list[ToolCallRecord]:
        """Every client tool call of a run, oldest first."""
        query = (
            select(ToolCallRecord)
            .where(ToolCallRecord.run_id == run_id)
            .order_by(col(ToolCallRecord.created_at))
        )
        return await self._all(query)


def conversation_title(text: str, limit: int = TITLE_LIMIT) -> str:
    """A conversation's title from its first request: the first non-blank line, cut at a
    word boundary to about `limit` characters (with "…"); no model call."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    cut = line[: limit + 1].rsplit(" ", 1)[0] if " " in line[: limit + 1] else ""
    if len(cut) < limit // 2:  # one long word (a path, a URL): cut it where it is
        cut = line[:limit]
    return cut.rstrip(" ,.;:-") + "…"


def _conversations_of(agent_id: str) -> SelectOfScalar[Conversation]:
    return (
        select(Conversation)
        .where(Conversation.agent_id == agent_id)
        .order_by(col(Conversation.updated_at).desc(), col(Conversation.created_at).desc())
    )


def _calls_of(
    conversation_id: str, status: str, *, newest_first: bool = False
) -> SelectOfScalar[ToolCallRecord]:
    created = col(ToolCallRecord.created_at)
    return (
        select(ToolCallRecord)
        .where(ToolCallRecord.conversation_id == conversation_id, ToolCallRecord.status == status)
        .order_by(created.desc() if newest_first else created)
    )


def _approval_row(call: ToolCallRecord, approval: ApprovalRecord) -> RunApproval:
    return RunApproval(
        run_id=call.run_id,
        conversation_id=call.conversation_id,
        call_id=call.id,
        tool=call.tool,
        **approval.model_dump(),
    )


def _event_type(event: ServerEvent) -> str:
    event_type = getattr(event, "type", None)
    if not isinstance(event_type, str):
        raise TypeError(f"{type(event).__name__} is not a server event with a type")
    if event_type in TRANSIENT_EVENT_TYPES:
        raise ValueError(f"{event_type!r} events are transient and are never stored")
    return event_type


async def agent_by_key(session: AsyncSession, user_id: str, key: str) -> Agent | None:
    """The user's agent under `key`, or the one `key` is an alias of (it moved)."""
    agent = await first(
        session, select(Agent).where(Agent.user_id == user_id, Agent.codebase_key == key)
    )
    if agent is not None:
        return agent
    alias = await first(
        session,
        select(AgentAlias).where(AgentAlias.user_id == user_id, AgentAlias.codebase_key == key),
    )
    return None if alias is None else await session.get(Agent, alias.agent_id)
