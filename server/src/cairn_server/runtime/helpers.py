"""Helper runs: what a run's `task` calls start, each a run in a conversation of its own.

Owns choosing a helper's tools and budget, its conversation (marked with its parent), the hub
that shows its client tool requests to the parent's client with its label, stopping it when
its budget is spent or its parent stops, and the result its parent's model reads.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cairn_protocol import RunStarted, ServerEvent, ToolRequest, ToolSettled, ToolWithdrawn
from cairn_protocol.messages import HELPER_WORKTREE_TOOL, HelperTag

from cairn_server.config import HelperSettings
from cairn_server.context.window import ContextWindow
from cairn_server.domain import ModelMessage, ToolSpec
from cairn_server.runtime.agent_run import AgentRun, RunLimits, RunSpec, tool_message
from cairn_server.runtime.hub import Client, ConversationHub
from cairn_server.storage.models import ToolCallRecord
from cairn_server.storage.store import Store, conversation_title
from cairn_server.tools.base import ToolContext, ToolOutcome, tool_error
from cairn_server.tools.task import TASK, TaskArgs

log = logging.getLogger(__name__)

RESULT_CHARS = 30_000  # of a helper's answer in its parent's tool result
WORKTREE_REPORT_WAIT_S = 60.0  # for the client's account of a helper's worktree
NO_HELPERS = "a helper cannot start helpers (one level only): leave task out of its tools"


class HelperHub(ConversationHub):
    """A helper conversation's hub: its events are its own, and its client tool requests
    (with how they end) also go to the parent's conversation, labelled, because the parent's
    client is the one that runs them."""

    def __init__(self, store: Store, conversation_id: str, parent: ConversationHub, tag: HelperTag):
        super().__init__(store, conversation_id, 0)
        self.parent = parent
        self.tag = tag
        self._sent: set[str] = set()  # call_ids of the requests the parent's clients saw
        self.ended = False  # the helper's run is over: a later run here is the conversation's

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """No batch here: a helper's events may go to its parent's hub too, and a batch
        publishes to one hub only."""
        yield

    def tagged(self, request: ToolRequest) -> ToolRequest:
        return request.model_copy(update={"helper": self.tag, "seq": 0})

    async def publish(self, event: ServerEvent) -> ServerEvent:
        stored = await super().publish(event)
        if self.ended:
            return stored
        if isinstance(event, ToolRequest):
            self._sent.add(event.call_id)
            await self.parent.publish(self.tagged(event))
        elif isinstance(event, ToolSettled | ToolWithdrawn) and event.call_id in self._sent:
            await self.parent.publish(event.model_copy(update={"seq": 0}))
        return stored

    def present(self, client_id: str) -> bool:
        return super().present(client_id) if self.ended else self.parent.present(client_id)


@dataclass
class Helper:
    """One helper while it runs: its label, run and hub."""

    tag: HelperTag
    run: AgentRun
    hub: HelperHub


@dataclass(frozen=True)
class HelperBudget:
    steps: int
    tokens: int
    cost_usd: float
    seconds: float


WindowFor = Callable[[str, tuple[ToolSpec, ...]], ContextWindow]


@dataclass
class HelperRuns:
    """The helpers of one parent run (its HelperLauncher): started by its `task` calls,
    several at once, each stopped by its budget or with its parent."""

    parent: AgentRun
    settings: HelperSettings
    window_for: WindowFor  # the context of a helper conversation with the given tools
    # The runtime's hubs: a helper's is there while it runs, so a client that opens its
    # conversation sees it live.
    hubs: dict[str, ConversationHub] = field(default_factory=dict)
    live: dict[str, Helper] = field(default_factory=dict)  # by conversation id
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ the launcher

    async def run_helper(self, ctx: ToolContext, args: TaskArgs) -> ToolOutcome:
        """Start one helper, wait for its end (its budget, or the parent's cancel), and tell
        the parent's model how it went."""
        chosen = self.choose_tools(args)
        if isinstance(chosen, str):
            return tool_error(chosen)
        tools, refused = chosen
        budget = self.budget(args)
        starting = asyncio.ensure_future(self._start(args, tools, refused, budget))
        try:
            helper = await asyncio.shield(starting)
        except asyncio.CancelledError:  # the parent stopped while the helper was being made
            helper = await starting
            helper.run.request_stop("cancelled", "its parent run was stopped")
            await helper.run.execute()  # ends at once, recorded and published as cancelled
            raise
        except Exception as exc:  # the parent's run goes on; its model reads why
            log.exception("run %s: a helper could not start", self.parent.run_id)
            return tool_error(f"the helper could not start: {exc}")
        task = asyncio.ensure_future(helper.run.execute())
        self._open(helper)
        try:
            await self._wait(helper, task, budget)
            report = await self._worktree_report(helper) if args.may_edit else None
            return await self._outcome(helper, budget, report)
        finally:
            self._close(helper)

    def _open(self, helper: Helper) -> None:
        conversation_id = helper.tag.conversation_id
        self.live[conversation_id] = helper
        self.hubs.setdefault(conversation_id, helper.hub)

    def _close(self, helper: Helper) -> None:
        """The helper is over: its hub forwards no more, and leaves if nobody watches."""
        conversation_id = helper.tag.conversation_id
        del self.live[conversation_id]
        helper.hub.ended = True
        if self.hubs.get(conversation_id) is helper.hub and helper.hub.idle:
            del self.hubs[conversation_id]

    # ------------------------------------------------------------------ choosing

    def choose_tools(self, args: TaskArgs) -> tuple[tuple[ToolSpec, ...], dict[str, str]] | str:
        """The helper's tools and the refusals its model reads, or why the arguments are
        wrong (one line)."""
        mine = {spec.name: spec for spec in self.parent.spec.tools if spec.name != TASK}
        kinds = {name: self.parent.tools.kind(name) for name in mine}
        reading = [name for name in mine if kinds[name] == "read"]
        wanted = list(dict.fromkeys(args.tools if args.tools is not None else reading))
        if TASK in wanted:
            return NO_HELPERS
        unknown = [name for name in wanted if name not in mine]
        if unknown:
            return (
                f"unknown tool{'s' if len(unknown) > 1 else ''} for a helper: "
                f"{', '.join(_shown(unknown))}; yours are: {', '.join(sorted(mine))}"
            )
        changing = [name for name in wanted if kinds[name] != "read"]
        if changing and not args.may_edit:
            return (
                f"{', '.join(changing)} can change things and this helper would be read-only: "
                "pass may_edit=true to let it edit (in its own git worktree and branch), or "
                "leave them out"
            )
        refused = {TASK: NO_HELPERS}
        if not args.may_edit:
            why = (
                "this helper is read-only (its task has may_edit=false), so {name} is refused; "
                "say in your final answer what should change instead"
            )
            refused |= {n: why.format(name=n) for n in mine if kinds[n] != "read"}
        return tuple(mine[name] for name in wanted), refused

    def budget(self, args: TaskArgs) -> HelperBudget:
        """What the helper may spend: its arguments, else the settings' defaults, each at
        most what the parent run has left."""
        limits, parent = self.parent.spec.limits, self.parent
        spent = parent.usage.input_tokens + parent.usage.output_tokens
        return HelperBudget(
            steps=max(1, min(args.max_steps or self.settings.steps, limits.steps - parent.steps)),
            tokens=max(1, min(args.max_tokens or self.settings.tokens, limits.tokens - spent)),
            cost_usd=max(0.0, limits.cost_usd - parent.usage.cost_usd),
            seconds=args.max_seconds or self.settings.seconds,
        )

    # ------------------------------------------------------------------ running

    async def _start(
        self,
        args: TaskArgs,
        tools: tuple[ToolSpec, ...],
        refused: dict[str, str],
        budget: HelperBudget,
    ) -> Helper:
        """The helper's conversation (marked with its parent), first message and run."""
        parent, store = self.parent, self.parent.store
        label = f"helper {next(self._numbers)}"
        title = f"{label}: {conversation_title(args.prompt, 50)}"
        conversation = await store.create_conversation(
            parent.agent_id, title, parent_id=parent.conversation_id
        )
        branch = f"cairn/helper-{conversation.id[-8:]}-{secrets.token_hex(2)}"
        tag = HelperTag(
            label=label,
            conversation_id=conversation.id,
            worktree_branch=branch if args.may_edit else None,
        )
        record = await store.create_run(conversation.id, parent.spec.model, parent.spec.owner)
        hub = HelperHub(store, conversation.id, parent.hub, tag)
        text = helper_message(label, parent.conversation_id, args, tag.worktree_branch)
        await store.add_message(conversation.id, record.id, ModelMessage("user", text))
        await hub.publish(RunStarted(run_id=record.id, user_text=args.prompt))
        spec = RunSpec(
            run_id=record.id,
            conversation_id=conversation.id,
            agent_id=parent.agent_id,
            model=parent.spec.model,
            tools=tools,
            limits=RunLimits(
                steps=budget.steps,
                tokens=budget.tokens,
                cost_usd=budget.cost_usd,
                repeats=parent.spec.limits.repeats,
            ),
            approval_timeout_s=parent.spec.approval_timeout_s,
            withdraw_grace_s=parent.spec.withdraw_grace_s,
            refused_tools=refused,
            owner=parent.spec.owner,
        )
        run = AgentRun(
            spec=spec,
            store=store,
            memory=parent.memory,
            hub=hub,
            provider=parent.provider,
            window=self.window_for(conversation.id, tools),
            executor=parent.executor,
            web=parent.web,
            tools=parent.tools,
            metrics=parent.metrics,
        )
        return Helper(tag, run, hub)

    async def _wait(self, helper: Helper, task: asyncio.Future[None], budget: HelperBudget) -> None:
        """Until the helper ends; stopped (and waited for) when its time is up or when the
        parent's call is cancelled (the parent run stopped)."""
        try:
            await asyncio.wait_for(asyncio.shield(task), budget.seconds)
        except TimeoutError:
            helper.run.request_stop(
                "cancelled",
                f"its time budget of {budget.seconds:g} s was spent (max_seconds)",
            )
            await task
        except asyncio.CancelledError:
            helper.run.request_stop("cancelled", "its parent run was stopped")
            await asyncio.shield(task)
            raise

    async def _worktree_report(self, helper: Helper) -> str:
        """The client's account of the helper's worktree (its branch, where it is, the diff
        stat), asked like any request of the helper; a line saying why when none came."""
        run, store = helper.run, helper.run.store
        record = await store.create_tool_call(
            helper.tag.conversation_id,
            run.run_id,
            f"{HELPER_WORKTREE_TOOL}-{secrets.token_hex(4)}",
            HELPER_WORKTREE_TOOL,
            {"branch": helper.tag.worktree_branch},
        )
        future: asyncio.Future[ToolCallRecord] = asyncio.get_running_loop().create_future()
        run.pending[record.id] = future  # answered through the helper run, as its own calls
        await helper.hub.publish(run.request_for(record))
        try:
            await asyncio.wait_for(asyncio.shield(future), WORKTREE_REPORT_WAIT_S)
        except TimeoutError:
            await run.withdraw(record.id, "the client did not describe the helper's worktree")
        except asyncio.CancelledError:
            await asyncio.shield(run.withdraw(record.id, "its parent run was stopped"))
            raise
        settled = await store.get_tool_call(record.id)
        assert settled is not None
        return tool_message(settled).content

    async def _outcome(
        self, helper: Helper, budget: HelperBudget, worktree: str | None
    ) -> ToolOutcome:
        """What the parent's model reads: how the helper ended, its last answer, its
        worktree; with what it spent, counted in the parent's usage."""
        store, run = helper.run.store, helper.run
        record = await store.get_run(run.run_id)
        assert record is not None
        answer = await _last_answer(store, helper.tag.conversation_id)
        stopped = record.stop_reason != "end_turn"
        head = (
            f"{helper.tag.label} (conversation {helper.tag.conversation_id}, "
            f"{run.steps} model call{'' if run.steps == 1 else 's'}, "
            f"{run.usage.input_tokens + run.usage.output_tokens:,} tokens)"
        )
        if stopped:
            why = stop_explanation(record.stop_reason, record.detail, budget)
            head += f" was stopped: {why}."
            head += " Its partial answer:" if answer else " It gave no answer."
        else:
            head += " answered:"
        body = _capped(answer)
        parts = [head, body] if body else [head]
        if worktree is not None:
            parts.append(f"Its worktree: {worktree}")
        return ToolOutcome("\n\n".join(parts), is_error=stopped and not answer, usage=run.usage)

    # ------------------------------------------------------------------ for the runtime

    def holding(self, call_id: str) -> AgentRun | None:
        """The helper run waiting for the client call `call_id`, if any."""
        return next((h.run for h in self.live.values() if call_id in h.run.pending), None)

    async def hand_over(self, client: Client) -> None:
        for helper in list(self.live.values()):
            await helper.run.hand_over(client)

    async def pending_requests(self) -> list[ToolRequest]:
        """The helpers' requests still waiting, labelled, for a welcome."""
        requests: list[ToolRequest] = []
        for helper in list(self.live.values()):
            store = helper.run.store
            for record in await store.pending_tool_calls(helper.tag.conversation_id):
                if record.id in helper.run.pending:
                    requests.append(helper.hub.tagged(helper.run.request_for(record)))
        return requests


def helper_message(label: str, parent_id: str, args: TaskArgs, branch: str | None) -> str:
    """The helper's first message: who it is, what it may do, and its task."""
    if branch is None:
        scope = (
            "You are read-only: you cannot edit files or memory; say in your answer what "
            "should change."
        )
    else:
        scope = (
            f"Your file tools work in your own git worktree on branch {branch}, not in the "
            "user's checkout; edit there. Do not commit."
        )
    return (
        f"[{label} of conversation {parent_id}] You are a helper: your own run started you "
        "to do one task. You share its memory, not its conversation. Work with your tools, "
        f"then answer once: your final message is all your caller reads. {scope}\n\n"
        f"Task:\n{args.prompt}"
    )


def stop_explanation(stop_reason: str | None, detail: str | None, budget: HelperBudget) -> str:
    """Why a helper stopped, in its own budget's terms."""
    if stop_reason == "step_limit":
        return f"its step budget of {budget.steps} model calls was spent (max_steps)"
    if stop_reason == "token_limit":
        return f"its token budget of {budget.tokens:,} was spent (max_tokens)"
    if stop_reason == "cost_limit":
        return f"the parent run's cost budget of ${budget.cost_usd:.2f} left was spent"
    return detail or stop_reason or "it ended without an answer"


async def _last_answer(store: Store, conversation_id: str) -> str:
    messages = await store.list_messages(conversation_id)
    texts = [m.content for m in messages if m.role == "assistant" and m.content.strip()]
    return texts[-1].removesuffix(" …[interrupted]") if texts else ""


def _capped(text: str) -> str:
    if len(text) <= RESULT_CHARS:
        return text
    return text[:RESULT_CHARS] + f"\n[… cut: {len(text) - RESULT_CHARS:,} more characters]"


def _shown(names: Iterable[str]) -> Sequence[str]:
    return [repr(name[:60]) for name in names]
