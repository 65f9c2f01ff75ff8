"""The runtime: which runs are active, and what client frames do to them.

Owns starting, superseding and cancelling runs, which client executes a run's tool requests,
routing tool results (late ones too), recovery at start, and each conversation's hub and lock
(kept while a client is there or a run goes on, dropped when it is idle).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cairn_protocol import (
    CLIENT_TOOLS,
    ContextCompacted,
    RunFinished,
    RunStarted,
    ToolRequest,
    ToolResult,
    Usage,
    WorkspaceIdentity,
)
from cairn_protocol.mcp import McpToolOffer
from cairn_protocol.messages import ErrorCode, StopReason, UserCommand

from cairn_server.config import ServerSettings
from cairn_server.context.budget import agent_budget
from cairn_server.context.compiler import AgentContext, tool_tokens
from cairn_server.context.window import ContextWindow
from cairn_server.domain import ModelMessage, ToolSpec
from cairn_server.memory.bootstrap import bootstrap_note
from cairn_server.memory.services import Memory
from cairn_server.providers.catalog import Learned, ModelCatalog
from cairn_server.runtime.agent_run import (
    AgentRun,
    RunLimits,
    RunSpec,
    close_dangling_calls,
    late_result_note,
    not_approved,
    settled_event,
    unknown_outcome,
)
from cairn_server.runtime.bus import ReplicaLink
from cairn_server.runtime.helpers import HelperRuns
from cairn_server.runtime.hub import Client, ConversationHub
from cairn_server.runtime.metrics import Metrics
from cairn_server.runtime.reflector import Reflector
from cairn_server.storage.models import Agent
from cairn_server.storage.store import RunInProgressError, Store
from cairn_server.tools.mcp_headers import (
    SEALED,
    HeaderKeyError,
    McpHeaders,
    ServerKey,
    default_key_file,
)
from cairn_server.tools.mcp_remote import RemoteMcp
from cairn_server.tools.registry import ToolRegistry, approve_only, server_registry
from cairn_server.tools.tool_search import arrange_tools
from cairn_server.tools.web_pages import WebPages

log = logging.getLogger(__name__)
RESTARTED = "the server restarted during this run"  # a recovered run's detail
SWEEP_S = 5.0  # how often a replica looks for the runs of replicas that are gone
REASON_CHARS = 500  # of a cancel's reason, sent to the replica running the run
UNKNOWN_OUTCOMES_LISTED = 50  # in a welcome: the newest calls a client may still report on


@dataclass
class ActiveRun:
    run: AgentRun
    task: asyncio.Task[None]
    helpers: HelperRuns  # the runs its task calls started, going now


class Runtime:
    """Shared by every connection of one server process."""

    def __init__(
        self,
        store: Store,
        memory: Memory,
        settings: ServerSettings,
        catalog: ModelCatalog,
    ) -> None:
        self.store = store
        self.memory = memory
        self.settings = settings
        self.catalog = catalog
        self.tools = server_registry(settings.fetch)
        self.web = WebPages(settings.fetch)  # fetch_url's pages, cached for every run
        # Only conversations with a client or a run (see `release`).
        self._hubs: dict[str, ConversationHub] = {}
        self._active: dict[str, ActiveRun] = {}
        # This process among the replicas of its database, stored with each run it starts;
        # whether another process lives (a ReplicaLink's answer on PostgreSQL; on SQLite
        # there is one process, so any other is gone).
        self.replica_id = f"rep_{secrets.token_hex(8)}"
        self.alive: Callable[[str | None], Awaitable[bool]] = self._only_this_one
        self._sweeper: asyncio.Task[None] | None = None
        self.metrics = Metrics() if settings.metrics else None
        self.link: ReplicaLink | None = None  # on PostgreSQL, set by the app at start
        self._locks: dict[str, asyncio.Lock] = {}
        # The MCP tools the conversation's latest client offered, for its context report.
        self._mcp_offers: dict[str, tuple[McpToolOffer, ...]] = {}
        # The agents' HTTP MCP servers' tools, and each agent's registry with them.
        key_file = settings.secret_key_file or default_key_file(settings.database_url)
        key = ServerKey(settings.secret_key, Path(key_file))
        self.remote_mcp = RemoteMcp(McpHeaders(key, settings.environ))
        self._registries: dict[str, ToolRegistry] = {}
        # Sleep-time memory: reflections on request and when a conversation goes idle.
        self.reflector = Reflector(
            store, memory, catalog, settings, lambda cid: cid in self._active
        )

    async def agent_tools(self, agent: Agent) -> ToolRegistry:
        """The one registry plus the tools of the agent's HTTP MCP servers (listed now,
        unless listed within the last minute); a server that cannot list adds none."""
        configured = await self.store.mcp_servers(agent.id)
        if not configured:
            self._registries.pop(agent.id, None)
            return self.tools
        servers = [self.remote_mcp.server(row) for row in configured]
        listings = await self.remote_mcp.listings(servers)
        extra = [tool for listing in listings.values() for tool in listing.tools]
        registry = self._registries[agent.id] = self.tools.with_tools(extra)
        return registry

    def offer_mcp_tools(self, conversation_id: str, tools: Sequence[McpToolOffer]) -> None:
        """Remember what a client that opened the conversation offers (until it is released),
        so its context report counts those tools."""
        self._mcp_offers[conversation_id] = tuple(tools)

    async def hub(self, conversation_id: str) -> ConversationHub:
        hub = self._hubs.get(conversation_id)
        if hub is None:
            last_seq = await self.store.last_seq(conversation_id)
            hub = self._hubs.setdefault(
                conversation_id, ConversationHub(self.store, conversation_id, last_seq)
            )
        return hub

    async def announced(self, conversation_id: str, seq: int) -> None:
        """An event was stored in `conversation_id` (by this process or another on the same
        database): the clients here get what they have not seen yet."""
        hub = self._hubs.get(conversation_id)
        if hub is not None and seq > hub.last_seq:
            await hub.catch_up()

    async def catch_up_all(self) -> None:
        """Every conversation with clients here gets what was stored while this process could
        not hear the announcements."""
        for hub in list(self._hubs.values()):
            await hub.catch_up()

    def detach(self, conversation_id: str, key: int) -> None:
        """A connection left the conversation; forget the conversation if it is idle now."""
        hub = self._hubs.get(conversation_id)
        if hub is not None:
            hub.detach(key)
        self.release(conversation_id)

    def release(self, conversation_id: str) -> None:
        """Drop the hub and lock of a conversation no client is in, with no run going and
        nobody holding its lock; they are made again when it is next used."""
        hub = self._hubs.get(conversation_id)
        lock = self._locks.get(conversation_id)
        if (
            (hub is not None and not hub.idle)
            or (lock is not None and lock.locked())
            or conversation_id in self._active
        ):
            return
        self._hubs.pop(conversation_id, None)
        self._locks.pop(conversation_id, None)
        self._mcp_offers.pop(conversation_id, None)

    @property
    def conversations_held(self) -> int:
        """How many conversations have a hub or lock in memory now."""
        return len(self._hubs.keys() | self._locks.keys())

    @property
    def runs_active(self) -> int:
        """How many runs are going now."""
        return len(self._active)

    @property
    def busy(self) -> bool:
        """Whether a run or a reflection is going now (the idle exit waits for both)."""
        return bool(self._active) or self.reflector.active > 0

    async def load_model_profiles(self) -> None:
        """Give the catalog what earlier processes learned about each model's server."""
        for profile in await self.store.model_profiles():
            self.catalog.remember(
                profile.model,
                Learned(
                    profile.context_window,
                    profile.learned_budget,
                    profile.token_ratio,
                    profile.ratio_samples,
                ),
            )

    def running_run_id(self, conversation_id: str) -> str | None:
        active = self._active.get(conversation_id)
        return active.run.run_id if active else None

    async def agent_for(self, user_id: str, workspace: WorkspaceIdentity) -> Agent:
        """The user's agent for a codebase, created with its default memory blocks."""
        agent = await self.store.get_or_create_agent(
            user_id, workspace, self.settings.context_budget
        )
        await self.memory.blocks.ensure_defaults(agent.id)
        return agent

    async def start_run(
        self,
        agent: Agent,
        conversation_id: str,
        model: str,
        text: str,
        client_tools: Sequence[str],
        executor: Client,
        command: UserCommand | None = None,
        client_notes: Sequence[str] = (),
        mcp_tools: Sequence[McpToolOffer] = (),
    ) -> str:
        """Start a run for a user message, first superseding any run still going. `executor`
        (the client that sent the message) runs the run's tool requests.

        `client_notes` (what the client did meanwhile, e.g. /undo) go before the message."""
        provider = self.catalog.provider(model)  # fails here, before anything is stored
        self._refuse_while_helper_runs(conversation_id)
        registry = await self.agent_tools(agent)
        async with self._lock(conversation_id):
            await self._stop_active(
                conversation_id, "superseded", "superseded by a new user message"
            )
            hub = await self.hub(conversation_id)
            run_record = await self.store.create_run(conversation_id, model, self.replica_id)
            note = await bootstrap_note(self.memory, agent.id, command)
            if note is not None:
                await self.store.add_event_message(conversation_id, run_record.id, note)
            for client_note in client_notes:
                await self.store.add_event_message(
                    conversation_id, run_record.id, f"[client] {client_note}"
                )
            await self.store.add_message(
                conversation_id, run_record.id, ModelMessage(role="user", content=text)
            )
            await hub.publish(RunStarted(run_id=run_record.id, user_text=text))
            self.offer_mcp_tools(conversation_id, mcp_tools)
            tools = tuple(registry.specs(client_tools, mcp_tools))
            run = AgentRun(
                spec=self._run_spec(run_record.id, agent, conversation_id, model, tools),
                store=self.store,
                memory=self.memory,
                hub=hub,
                provider=provider,
                window=self.context_window(agent, conversation_id, model, tools),
                executor=executor,
                web=self.web,
                tools=registry,
                metrics=self.metrics,
            )
            run.helpers = helpers = self._helpers_of(run, agent)
            task = asyncio.create_task(self._drive(conversation_id, run), name=run_record.id)
            self._active[conversation_id] = ActiveRun(run, task, helpers)
            return run_record.id

    def _refuse_while_helper_runs(self, conversation_id: str) -> None:
        """A helper's conversation takes no message and no compaction while the helper runs
        (its run is its parent's, not in `_active`)."""
        if any(conversation_id in active.helpers.live for active in self._active.values()):
            raise RunInProgressError(
                "a helper is running in this conversation; wait for it to finish (or stop the "
                "run that started it) and send it then"
            )

    def _helpers_of(self, run: AgentRun, agent: Agent) -> HelperRuns:
        """What runs the `task` calls of `run`: helpers in the agent's conversations."""
        model = run.spec.model
        return HelperRuns(
            parent=run,
            settings=self.settings.helpers,
            window_for=lambda cid, tools: self.context_window(agent, cid, model, tools),
            hubs=self._hubs,
        )

    def _run_spec(
        self,
        run_id: str,
        agent: Agent,
        conversation_id: str,
        model: str,
        tools: tuple[ToolSpec, ...],
    ) -> RunSpec:
        settings = self.settings
        return RunSpec(
            run_id=run_id,
            conversation_id=conversation_id,
            agent_id=agent.id,
            model=model,
            tools=tools,
            limits=RunLimits(
                steps=settings.step_limit,
                tokens=settings.run_token_limit,
                cost_usd=settings.run_cost_limit_usd,
                repeats=settings.repeat_limit,
            ),
            approval_timeout_s=settings.approval_timeout_s,
            withdraw_grace_s=settings.withdraw_grace_s,
            owner=self.replica_id,
        )

    def context_window(
        self,
        agent: Agent,
        conversation_id: str,
        model: str | None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ContextWindow:
        """The conversation's context as `model` will be sent it with `tools` (default: every
        tool), summarised (when due) by CAIRN_SUMMARY_MODEL or else the same model."""
        learned = self.catalog.learned(model)
        budget = (
            agent_budget(agent, self.settings, model)
            .calibrated(learned.ratio)
            .capped(learned.learned_budget)
        )
        if tools is None:
            registry = self._registries.get(agent.id, self.tools)
            tools = registry.specs(CLIENT_TOOLS, self._mcp_offers.get(conversation_id, ()))
        limit = int(budget.tokens * self.settings.mcp_tool_share)
        arranged = arrange_tools(tools, tool_tokens, limit)
        return ContextWindow(
            store=self.store,
            memory=self.memory,
            context=AgentContext(agent.display_name, arranged.offered, arranged.deferred),
            agent_id=agent.id,
            conversation_id=conversation_id,
            budget=budget,
            catalog=self.catalog,
            model=model,
        )

    async def compact(
        self,
        agent: Agent,
        conversation_id: str,
        model: str | None,
        client_tools: Sequence[str],
        focus: str | None = None,
        mcp_tools: Sequence[McpToolOffer] = (),
    ) -> ContextCompacted | None:
        """Compact a conversation now (/compact); RunInProgressError while a run is going.
        The ContextCompacted event is published; None when nothing could be compacted."""
        self._refuse_while_helper_runs(conversation_id)
        async with self._lock(conversation_id):
            if conversation_id in self._active:
                raise RunInProgressError(
                    "a run is in progress; wait for it to finish (or press Esc) and compact then"
                )
            tools = self._registries.get(agent.id, self.tools).specs(client_tools, mcp_tools)
            window = self.context_window(agent, conversation_id, model, tools)
            compaction = await window.compact("requested", None, focus)
            if compaction is not None:
                await (await self.hub(conversation_id)).publish(compaction)
        self.release(conversation_id)
        return compaction

    async def resume_requests(self, conversation_id: str, client: Client) -> None:
        """Hand the running run's tool requests to `client` when their executor is gone and
        `client` works in the same checkout (a restarted cairn resuming its run); they are
        sent again naming it. A client in another checkout never takes them over."""
        active = self._active.get(conversation_id)
        if active is None:
            return
        executor = active.run.executor
        hub = await self.hub(conversation_id)
        if executor.id == client.id or executor.path != client.path or hub.present(executor.id):
            return
        await active.run.hand_over(client)
        await active.helpers.hand_over(client)

    async def pending_requests(self, conversation_id: str) -> list[ToolRequest]:
        """The conversation's tool requests still waiting for an answer, naming who runs them."""
        active = self._active.get(conversation_id)
        helpers = await active.helpers.pending_requests() if active is not None else []
        return helpers + [
            active.run.request_for(record)
            if active is not None and record.run_id == active.run.run_id
            else ToolRequest(
                run_id=record.run_id,
                call_id=record.id,
                tool=record.tool,
                arguments=record.arguments,
                approve_only=approve_only(record.tool),
            )
            for record in await self.store.pending_tool_calls(conversation_id)
        ]

    async def unknown_outcomes(self, conversation_id: str) -> list[str]:
        """The newest calls of the conversation whose outcome is unknown, a client may report."""
        records = await self.store.unknown_tool_calls(conversation_id, UNKNOWN_OUTCOMES_LISTED)
        # An approval-only call (fetch_url) ran nowhere but here: its client has no result.
        return [record.id for record in records if not approve_only(record.tool)]

    async def submit_tool_result(
        self, conversation_id: str, result: ToolResult, client_id: str
    ) -> tuple[ErrorCode, str] | None:
        """Route a client's answer; (code, message) when it is refused: from a client that is
        not the call's executor, or with nothing waiting for it."""
        call_id = result.call_id
        active = self._active.get(conversation_id)
        # The run waiting for it: the conversation's, or one of its helpers (whose requests
        # the same executor runs).
        waiting = None
        if active is not None:
            pending = call_id in active.run.pending
            waiting = active.run if pending else active.helpers.holding(call_id)
        if active is not None and waiting is not None:
            executor = active.run.executor.id
            if client_id != executor:
                return "not_executor", (
                    f"tool call {call_id!r} is run by client {executor!r}, not by this one"
                )
            if await waiting.accept_result(
                call_id, result.status, result.content, result.reason, result.approval
            ):
                return None
        record = await self.store.get_tool_call(call_id)
        if record is None or record.conversation_id != conversation_id:
            return "unknown_call", f"no tool call {call_id!r} in this conversation"
        if record.status == "unknown" and await self._late_result(conversation_id, result):
            return None
        if record.status == "pending":
            return "unknown_call", (
                f"tool call {call_id!r} belongs to a run that is no longer active"
            )
        return "unknown_call", f"tool call {call_id!r} was already settled"

    async def _late_result(self, conversation_id: str, result: ToolResult) -> bool:
        """Record the result of a call whose outcome was unknown (it arrived after a restart
        or after the run stopped waiting) and tell the model what really happened. Any client
        of the conversation may send it: after a restart the executor is a new process."""
        record = await self.store.settle_tool_call(
            result.call_id,
            result.status,
            result.content,
            result.reason,
            result.approval,
            was="unknown",
        )
        if record is None:
            return False
        await (await self.hub(conversation_id)).publish(settled_event(record))
        note = late_result_note(record)
        active = self._active.get(conversation_id)
        if active is None or not active.run.add_note(note):
            await self.store.add_event_message(conversation_id, None, note)
        return True

    async def cancel(self, conversation_id: str, reason: str) -> bool:
        """Stop the conversation's run: here, or (on PostgreSQL) by asking the replica that
        runs it; False when no run is going."""
        async with self._lock(conversation_id):
            stopped = await self._stop_active(conversation_id, "cancelled", reason)
        self.release(conversation_id)
        if stopped or self.link is None or not await self.store.running_runs(conversation_id):
            return stopped
        request = {"cancel": conversation_id, "reason": reason[:REASON_CHARS]}
        return await self.link.ask(request)

    async def asked(self, request: dict[str, str]) -> None:
        """Another replica (or this one) asks the replica running a conversation's run to act
        on it; a request about a run this process does not run is not its."""
        conversation_id = request.get("cancel")
        if conversation_id is not None and conversation_id in self._active:
            await self.cancel(conversation_id, request.get("reason") or "cancelled")

    async def seal_stored_headers(self) -> int:
        """Seal the MCP headers an earlier version stored in clear; how many servers had any.
        A key that cannot seal them leaves them (still sent) and says why in the log."""
        rows = await self.store.unsealed_mcp_servers(SEALED)
        for row in rows:
            try:
                sealed = self.remote_mcp.headers.seal_opened(row.name, row.headers)
            except HeaderKeyError as exc:
                log.warning("MCP headers left unsealed: %s", exc)
                return 0
            await self.store.set_mcp_headers(row.id, sealed)
        return len(rows)

    async def _only_this_one(self, replica_id: str | None) -> bool:
        return replica_id == self.replica_id

    async def recover_after_restart(self) -> int:
        """At start: end the runs and reflections a previous process left going."""
        ended = await self.end_orphaned_runs()
        await self.reflector.reflections.interrupt_running()
        return ended

    def start_sweeping(self) -> None:
        """End, every SWEEP_S seconds, the runs of replicas that are gone (one killed while it
        ran them), so their conversations go on."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(SWEEP_S)
                try:
                    await self.end_orphaned_runs()
                except Exception:  # the next sweep tries again
                    log.exception("sweeping the runs of gone replicas failed")

        self._sweeper = asyncio.create_task(sweep(), name="run-sweeper")

    async def end_orphaned_runs(self) -> int:
        """End the runs that a server process which is gone left running (at start: the
        previous process's; on PostgreSQL, a dead replica's, never a live one's), so their
        conversations go on."""
        candidates = [
            r for r in await self.store.running_runs() if r.conversation_id not in self._active
        ]
        gone = {owner for owner in {r.owner for r in candidates} if not await self.alive(owner)}
        runs = [run for run in candidates if run.owner in gone]  # each owner asked once
        if not runs:
            return 0
        pending = {
            run.id: [
                c
                for c in await self.store.pending_tool_calls(run.conversation_id)
                if c.run_id == run.id
            ]
            for run in runs
        }
        for call in (c for calls in pending.values() for c in calls if approve_only(c.tool)):
            # Waiting for an approval: the server never ran it, so it is not of unknown outcome.
            await self.store.settle_tool_call(
                call.id, "denied", "", not_approved("the server restarted")
            )
        ended = await self.store.interrupt_running_runs(
            unknown_outcome("the server restarted"), [run.id for run in runs]
        )
        ended_ids = {run.id for run in ended}
        runs = [run for run in runs if run.id in ended_ids]  # not one that ended meanwhile
        if self.metrics is not None:
            self.metrics.orphaned_runs.inc(len(runs))
        for run in runs:
            hub = await self.hub(run.conversation_id)
            for call in pending[run.id]:
                settled = await self.store.get_tool_call(call.id)
                assert settled is not None
                await hub.publish(settled_event(settled))
            # The reason a client that saw the run end gives its calls that never ran.
            await close_dangling_calls(self.store, run.conversation_id, run.id, RESTARTED)
            await hub.publish(
                RunFinished(
                    run_id=run.id,
                    stop_reason="server_restart",
                    usage=Usage(
                        input_tokens=run.input_tokens,
                        cached_input_tokens=run.cached_input_tokens,
                        output_tokens=run.output_tokens,
                        cost_usd=run.cost_usd,
                    ),
                    steps=run.steps,
                    detail=RESTARTED,
                )
            )
            self.release(run.conversation_id)
        return len(runs)

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.reflector.aclose()
        for conversation_id in list(self._active):
            await self._stop_active(
                conversation_id, "server_restart", "the server is shutting down"
            )
        await self.catalog.aclose()

    # ------------------------------------------------------------------ internals

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        return self._locks.setdefault(conversation_id, asyncio.Lock())

    async def _stop_active(
        self, conversation_id: str, stop_reason: StopReason, reason: str
    ) -> bool:
        active = self._active.get(conversation_id)
        if active is None:
            return False
        active.run.request_stop(stop_reason, reason)
        await asyncio.shield(active.task)
        return True

    async def _drive(self, conversation_id: str, run: AgentRun) -> None:
        if self.metrics is not None:
            self.metrics.active_runs.inc()
        try:
            await run.execute()
        finally:
            if self.metrics is not None:
                self.metrics.active_runs.dec()
            active = self._active.get(conversation_id)
            if active is not None and active.run is run:
                del self._active[conversation_id]
            self.release(conversation_id)
