"""One run of the agent loop: compile, stream from the model, run tools, repeat.

Owns a run's steps, its waits on client tools (asked of one executor, withdrawn, closed
honestly), and how it ends (answer, limit, cancel).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cairn_protocol import (
    AssistantDelta,
    AssistantMessage,
    HistoryToolCall,
    ModelRetry,
    RunFinished,
    StepFinished,
    ToolArgumentsError,
    ToolRequest,
    ToolSettled,
    ToolWithdrawn,
    Usage,
    validate_tool_arguments,
)
from cairn_protocol.mcp import is_mcp_tool
from cairn_protocol.messages import ApprovalRecord, StopReason, ToolStatus
from cairn_protocol.results import not_run

from cairn_server.config import MAX_TOKENS_ENV
from cairn_server.context.budget import BudgetError
from cairn_server.context.tokens import count_tokens
from cairn_server.context.window import ContextWindow, Prepared
from cairn_server.domain import (
    MalformedArguments,
    ModelMessage,
    ModelStopReason,
    ToolCall,
    ToolSpec,
)
from cairn_server.memory.services import Memory
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    EmptyAnswerError,
    Provider,
    ProviderError,
    Retrying,
    TextDelta,
    ToolCallReady,
)
from cairn_server.providers.catalog import Learned
from cairn_server.providers.pricing import cost_usd
from cairn_server.runtime.history import read_outcome
from cairn_server.runtime.hub import Client, ConversationHub
from cairn_server.runtime.metrics import Metrics
from cairn_server.storage.models import Message, ToolCallRecord
from cairn_server.storage.repository import describe_failure
from cairn_server.storage.store import Store, to_model_message
from cairn_server.tools.base import HelperLauncher, ToolContext, ToolOutcome
from cairn_server.tools.registry import TOOLS, ToolRegistry, approve_only
from cairn_server.tools.task import TASK
from cairn_server.tools.web_pages import WebPages

if TYPE_CHECKING:
    from prometheus_client import Histogram

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunInterrupted(Exception):
    """Raised inside a run at a safe point when it was asked to stop."""


# A token ratio is stored again when it moved this much since it was last stored.
RATIO_SAVE_STEP = 0.02


@dataclass(frozen=True)
class Answer:
    """One model call's answer: its text, tool calls, usage, how it ended, and the cap on
    its tokens it was asked with."""

    text: str
    calls: list[ToolCall]
    usage: Usage
    stop_reason: ModelStopReason
    max_tokens: int


@dataclass
class StopRequest:
    stop_reason: StopReason
    reason: str


@dataclass(frozen=True)
class RunLimits:
    """What one run may spend before it is stopped, and how often it may repeat a call
    that failed."""

    steps: int = 200
    tokens: int = 2_000_000
    cost_usd: float = 5.0
    repeats: int = 3


@dataclass(frozen=True)
class RunSpec:
    """What a run is, fixed when it starts: whose, in which conversation, on which model,
    with which tools, within which limits and waits."""

    run_id: str
    conversation_id: str
    agent_id: str
    model: str
    # What the run offers the model: the client tools its client offered, every server tool.
    tools: tuple[ToolSpec, ...]
    limits: RunLimits
    approval_timeout_s: float
    # How long a withdrawn call's executor has to say what happened.
    withdraw_grace_s: float = 5.0
    # Tools this run refuses with the reason the model reads (a read-only helper's edits).
    refused_tools: Mapping[str, str] = field(default_factory=dict)
    # The server process running it (its replica id, stored with the run).
    owner: str | None = None


@dataclass
class AgentRun:
    """State of one run; `execute` drives it to its end and always publishes RunFinished."""

    spec: RunSpec
    store: Store
    memory: Memory
    hub: ConversationHub
    provider: Provider
    window: ContextWindow
    executor: Client  # the client that runs this run's tool requests (a resumer takes over)
    web: WebPages  # what fetch_url reads pages through (with the server's cache)
    tools: ToolRegistry = TOOLS
    # What runs this run's `task` calls (runtime/helpers.py); None: a helper, which has none.
    helpers: HelperLauncher | None = None
    # Client calls not yet settled, by call_id; an answer resolves its future.
    pending: dict[str, asyncio.Future[ToolCallRecord]] = field(default_factory=dict)
    # Client calls of the model (by call_id) whose result is stored as its tool message in
    # the transaction that settles them.
    _answers_model: set[str] = field(default_factory=set)
    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    _stop: StopRequest | None = None
    _stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    _partial_text: str = ""
    # Notes for the model that arrived mid-step (a late result); stored at the next safe point.
    _notes: list[str] = field(default_factory=list)
    _notes_closed: bool = False
    # What the provider said the user must hear (tools this server cannot use).
    _notice: str | None = None
    metrics: Metrics | None = None  # CAIRN_METRICS
    _waited: float = 0.0  # of the current step, in model calls and tool waits

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def conversation_id(self) -> str:
        return self.spec.conversation_id

    @property
    def agent_id(self) -> str:
        return self.spec.agent_id

    # ------------------------------------------------------------------ control

    def request_stop(self, stop_reason: StopReason, reason: str) -> None:
        if self._stop is None:
            self._stop = StopRequest(stop_reason, reason)
        self._stop_event.set()

    def add_note(self, text: str) -> bool:
        """Tell the model `text` before its next step (or as the run ends); False once the
        run has stored its last note, so the caller stores it itself."""
        if self._notes_closed:
            return False
        self._notes.append(text)
        return True

    async def hand_over(self, client: Client) -> None:
        """Make `client` the executor (it resumed this run) and send it the waiting requests."""
        self.executor = client
        for record in await self.store.pending_tool_calls(self.conversation_id):
            if record.id in self.pending:
                await self.hub.publish(self.request_for(record))

    def request_for(self, record: ToolCallRecord) -> ToolRequest:
        return ToolRequest(
            run_id=self.run_id,
            call_id=record.id,
            tool=record.tool,
            arguments=record.arguments,
            executor=self.executor.id,
            model_call_id=record.model_call_id,
            approve_only=approve_only(record.tool),
        )

    async def execute(self) -> None:
        stop_reason: StopReason
        detail: str | None
        try:
            stop_reason, detail = await self._loop()
            if self._notice:  # what the user must hear about the model's server, once
                detail = f"{detail}\n{self._notice}" if detail else self._notice
        except RunInterrupted:
            assert self._stop is not None
            stop_reason, detail = self._stop.stop_reason, self._stop.reason
        except (ProviderError, BudgetError) as exc:
            stop_reason, detail = "model_error", str(exc)
        except Exception as exc:  # a bug must end the run visibly, never hang it
            log.exception("run %s failed", self.run_id)
            stop_reason, detail = "model_error", f"internal error: {exc!r}"
        await self._close_open_calls(detail or stop_reason)
        await self.store.finish_run(self.run_id, stop_reason, detail)
        await self.hub.publish(
            RunFinished(
                run_id=self.run_id,
                stop_reason=stop_reason,
                usage=self.usage,
                steps=self.steps,
                detail=detail,
            )
        )

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> tuple[StopReason, str | None]:
        for _ in range(self.spec.limits.steps):
            self._check_stop()
            started, self._waited = time.perf_counter(), 0.0
            try:
                ended = await self._step()
            finally:
                self._observe_step(time.perf_counter() - started)
            if ended is not None:
                return ended
        return "step_limit", (
            f"stopped after {_model_calls(self.steps)}, the run's step limit (CAIRN_STEP_LIMIT)"
        )

    async def _step(self) -> tuple[StopReason, str | None] | None:
        """One model call and its tool calls; how the run ends, or None to go on."""
        prepared, answer = await self._call_model(await self._prepare())
        text, calls, reported = answer.text, answer.calls, answer.usage
        usage = counted_if_unreported(reported, prepared.tokens, text, calls, self.spec.model)
        budget = self.window.budget.tokens  # the one this request was built within
        await self._calibrate(prepared.tokens, reported.input_tokens)
        self._partial_text = ""
        self.steps += 1
        self.usage = self.usage + usage
        async with self.hub.batch():  # the step, its answer and their events: one commit
            await self.store.record_step(self.run_id, usage, prepared.tokens, budget)
            await self.hub.publish_transient(
                StepFinished(
                    run_id=self.run_id,
                    step=self.steps,
                    usage=usage,
                    context_tokens=prepared.tokens,
                    context_budget=budget,
                )
            )
            await self._record_assistant(text, calls)
        if answer.stop_reason == "max_tokens":
            return await self._truncated(calls, answer.max_tokens)
        if not calls:
            return "end_turn", None
        repeated: str | None = None
        started = self._start_helpers(calls)  # every task call of the step, in parallel
        try:
            for call in calls:
                result = await self._run_tool(call, started.get(call.id))
                repeated = repeated or self._count_failure(call, result)
        finally:
            await _cancel_all(started.values())
        return self._over_limits(repeated)

    def _observe_step(self, elapsed_s: float) -> None:
        """Count a step for the metrics: its own time is what the model and tools did not take."""
        if self.metrics is not None:
            self.metrics.step_seconds.observe(max(0.0, elapsed_s - self._waited))

    def _waited_for(self, started: float, histogram: Histogram | None) -> None:
        """A wait outside the run's own work (a model call, a tool's result) ended."""
        elapsed = time.perf_counter() - started
        self._waited += elapsed
        if histogram is not None:
            histogram.observe(elapsed)

    async def _prepare(self) -> Prepared:
        """Write what the model must be told first (notes that waited, memory changes, a
        compaction when due), then build the request from what is stored."""
        await self._store_notes()  # every call of the last step has its result by now
        await self.window.note_memory_changes(self.run_id)
        compaction, prepared = await self.window.next_request(self.run_id)
        if compaction is not None:
            await self.hub.publish(compaction)
        return prepared

    async def _call_model(self, prepared: Prepared) -> tuple[Prepared, Answer]:
        """Stream one answer. If the provider says the prompt overflows its window (our
        count was short of its own), or its server refused a request big enough to have
        overflowed without a word (an empty 200), lower the budget, compact and try once
        more; what it taught is stored for the next process."""
        try:
            return prepared, await self._timed_stream(prepared)
        except (ContextOverflowError, EmptyAnswerError) as exc:
            if isinstance(exc, EmptyAnswerError):
                if not self.window.overflow_plausible(prepared.tokens):
                    raise
                exc = ContextOverflowError(str(exc))
            log.warning("run %s: provider overflow (%s); compacting", self.run_id, exc)
            self._partial_text = ""
            await self._keep_learned(self.window.shrink_after_overflow(prepared.tokens, exc))
            compaction = await self.window.compact("overflow", self.run_id)
            if compaction is not None:
                await self.hub.publish(compaction)
            prepared = await self._prepare()
            return prepared, await self._timed_stream(prepared)

    async def _timed_stream(self, prepared: Prepared) -> Answer:
        started = time.perf_counter()
        try:
            return await self._interruptible(self._stream(prepared))
        finally:
            metrics = self.metrics
            self._waited_for(started, metrics.model_seconds if metrics is not None else None)
            if metrics is not None:
                metrics.steps.inc()

    async def _calibrate(self, counted: int, reported: int) -> None:
        """One more prompt the server counted itself: the model's token ratio (and so the
        budget) follows it; a change worth it is stored."""
        catalog, model = self.window.catalog, self.spec.model
        old = catalog.learned(model)
        new = old.with_prompt(counted, reported)
        if new == old:
            return
        catalog.remember(model, new)
        self.window.recalibrate(old, new)
        if new.ratio_samples == 1 or abs(new.token_ratio - old.token_ratio) >= RATIO_SAVE_STEP:
            await self._keep_learned(new)

    async def _keep_learned(self, learned: Learned) -> None:
        try:
            await self.store.save_model_profile(self.spec.model, **learned.fields())
        except Exception:  # losing it costs a relearning, never the run
            log.exception("run %s: storing what the model's server taught failed", self.run_id)

    async def _truncated(self, calls: list[ToolCall], cap: int) -> tuple[StopReason, str]:
        """The answer hit its token cap: its tool calls (the last one cut mid-arguments) are
        answered "not run", and the run ends saying so."""
        why = f"the answer was cut at the cap of {cap:,} tokens before this call was complete"
        for call in calls:
            await self._settle_here(call, _tool_error(call, f"not run: {why}"))
        return "truncated", (
            f"the answer was cut at {cap:,} tokens, the cap on one answer; raise "
            f'{MAX_TOKENS_ENV} or say "continue"'
        )

    def _count_failure(self, call: ToolCall, result: ModelMessage) -> str | None:
        """Remember a failed call; its name when the same call failed `repeats` times."""
        if not result.is_error:
            return None
        key = f"{call.name}:{_canonical_arguments(call)}"
        self.failures[key] = self.failures.get(key, 0) + 1
        return call.name if self.failures[key] >= self.spec.limits.repeats else None

    def _over_limits(self, repeated: str | None) -> tuple[StopReason, str] | None:
        """Which limit the run has reached, and how much of it was used (its variable named),
        after a step whose calls all have their results, so "continue" can pick it up."""
        limits = self.spec.limits
        if repeated is not None:
            return "loop_detected", (
                f"stopped: the model made the same failing {repeated} call {limits.repeats} "
                "times, the run's repeat limit (CAIRN_REPEAT_LIMIT)"
            )
        tokens = self.usage.input_tokens + self.usage.output_tokens
        if tokens >= limits.tokens:
            return "token_limit", (
                f"stopped after {tokens:,} tokens in {_model_calls(self.steps)}, the run's limit "
                f"being {limits.tokens:,} (CAIRN_RUN_TOKEN_LIMIT)"
            )
        if self.usage.cost_usd >= limits.cost_usd:
            return "cost_limit", (
                f"stopped after ${self.usage.cost_usd:.2f} in {_model_calls(self.steps)}, the "
                f"run's limit being ${limits.cost_usd:.2f} (CAIRN_RUN_COST_LIMIT_USD)"
            )
        return None

    async def _stream(self, prepared: Prepared) -> Answer:
        cap = self.window.catalog.max_tokens(self.spec.model)
        request = replace(prepared.compiled.request, max_output_tokens=cap)
        calls: list[ToolCall] = []
        usage = Usage()
        stop_reason: ModelStopReason = "end_turn"
        async for event in self.provider.stream(request):
            if isinstance(event, TextDelta):
                self._partial_text += event.text
                await self.hub.publish_transient(
                    AssistantDelta(run_id=self.run_id, text=event.text)
                )
                # A stream whose data is already buffered never suspends: yield, so one fast
                # answer does not keep the server from everyone else.
                await asyncio.sleep(0)
            elif isinstance(event, ToolCallReady):
                calls.append(event.call)
            elif isinstance(event, Retrying):
                if event.discarded_output:
                    self._partial_text = ""
                    calls.clear()
                await self.hub.publish_transient(
                    ModelRetry(
                        run_id=self.run_id,
                        attempt=event.attempt,
                        delay_s=event.delay_s,
                        reason=event.reason,
                        discarded_output=event.discarded_output,
                    )
                )
            elif isinstance(event, Completed):
                usage, stop_reason = event.usage, event.stop_reason
                self._notice = self._notice or event.notice
        return Answer(self._partial_text, calls, usage, stop_reason, cap)

    async def _record_assistant(self, text: str, calls: list[ToolCall]) -> None:
        await self.store.add_message(
            self.conversation_id,
            self.run_id,
            ModelMessage(role="assistant", content=text, tool_calls=tuple(calls)),
        )
        await self.hub.publish(
            AssistantMessage(
                run_id=self.run_id,
                text=text,
                tool_calls=[
                    HistoryToolCall(call_id=c.id, tool=c.name, arguments=c.arguments_object)
                    for c in calls
                ],
            )
        )

    # ------------------------------------------------------------------ tools

    def _start_helpers(self, calls: list[ToolCall]) -> dict[str, asyncio.Task[ToolOutcome]]:
        """Start the step's well-formed task calls at once, so its helpers run side by side;
        their results are still stored in the model's order."""
        offered = {tool.name for tool in self.window.context.tools}
        return {
            call.id: asyncio.ensure_future(self.tools.dispatch(self._tool_context(call), call))
            for call in calls
            if call.name == TASK
            and TASK in offered
            and call.name not in self.spec.refused_tools
            and not isinstance(call.parsed, MalformedArguments)
        }

    def _tool_context(self, call: ToolCall) -> ToolContext:
        return ToolContext(
            self.memory,
            self.agent_id,
            self.conversation_id,
            self.run_id,
            call.id,
            web=self.web,
            deferred=tuple(self.window.context.deferred),
            helpers=self.helpers,
        )

    async def _run_tool(
        self, call: ToolCall, started: asyncio.Task[ToolOutcome] | None = None
    ) -> ModelMessage:
        """Run one call (here, or by asking the executor) or refuse it; its result, as the
        model reads it, is stored. `started`: the call's outcome, already under way."""
        if isinstance(call.parsed, MalformedArguments):
            return await self._settle_here(call, _tool_error(call, call.parsed.problem))
        if call.name in self.spec.refused_tools:
            refusal = self.spec.refused_tools[call.name]
            return await self._settle_here(call, _tool_error(call, refusal))
        context = self.window.context
        sent = {tool.name for tool in context.tools}
        # A deferred tool may be called before tool_search loaded it: its client checks it.
        offered = sent | {tool.name for tool in context.deferred}
        runner = self.tools.runner(call.name) if call.name in offered else None
        if runner is None:
            unknown = f"unknown tool {call.name!r}; available tools: {', '.join(sorted(sent))}"
            return await self._settle_here(call, _tool_error(call, unknown))
        if runner == "server":
            if started is None and self.tools.asks(call.name):
                decided = await self._ask_approval(call)
                if isinstance(decided, ModelMessage):
                    return decided  # refused: stored and told
                return await self._run_here(decided)
            return await self._run_here(call, started)
        try:
            if not is_mcp_tool(call.name):  # an MCP tool's schema is checked by its client
                validate_tool_arguments(call.name, call.parsed)
        except ToolArgumentsError as exc:
            return await self._settle_here(call, _tool_error(call, str(exc)))
        record = await self._ask_client(call, call.parsed, answers_model=True)
        return tool_message(record)  # stored as it was settled

    async def _run_here(
        self, call: ToolCall, started: asyncio.Task[ToolOutcome] | None = None
    ) -> ModelMessage:
        """Run a server tool (or await its outcome, `started` already) and settle it."""
        if started is not None:
            outcome = await self._interruptible(started)
        else:
            outcome = await self.tools.dispatch(self._tool_context(call), call)
        if outcome.usage is not None:  # a helper's spending is this run's
            self.usage = self.usage + outcome.usage
        self.window.load_tools(outcome.loaded)
        result = ModelMessage(
            "tool", outcome.content, tool_call_id=call.id, is_error=outcome.is_error
        )
        return await self._settle_here(call, result)

    async def _ask_approval(self, call: ToolCall) -> ToolCall | ModelMessage:
        """For a server tool its client must approve first (fetch_url): ask the executor as a
        client tool is asked (its policy, its person); the call with the approved arguments,
        or the refusal, stored and told. With no executor connected it is refused, not run."""
        asked = self.tools.approval_arguments(call)
        if isinstance(asked, ToolOutcome):
            refused = ModelMessage("tool", asked.content, tool_call_id=call.id, is_error=True)
            return await self._settle_here(call, refused)
        if not self.hub.present(self.executor.id):
            return await self._settle_here(call, _tool_error(call, nobody_to_ask(call.name)))
        record = await self._ask_client(call, asked)
        if record.status != "ok":
            status: ToolStatus = "denied" if record.status == "denied" else "error"
            return await self._settle_here(call, tool_message(record), (status, record.reason))
        return ToolCall(call.id, call.name, json.dumps(record.arguments))

    async def _settle_here(
        self,
        call: ToolCall,
        result: ModelMessage,
        shown_as: tuple[ToolStatus, str | None] | None = None,
    ) -> ModelMessage:
        """Store the result of a call no client runs (a server tool, or a call refused before
        any client saw it, or by its client), then tell the clients how it ended, as the
        history reads it (or as `shown_as` says: a refusal's status and reason)."""
        status, reason, shown = read_outcome(call.name, result.content, result.is_error)
        if shown_as is not None:
            status, reason = shown_as
        async with self.hub.batch():
            await self.store.add_message(self.conversation_id, self.run_id, result)
            await self.hub.publish(
                ToolSettled(
                    run_id=self.run_id, call_id=call.id, status=status, reason=reason, result=shown
                )
            )
        return result

    async def _ask_client(
        self, call: ToolCall, arguments: dict[str, Any], *, answers_model: bool = False
    ) -> ToolCallRecord:
        """Send the request to the executor and wait for its answer (`answers_model`: its
        result is the model's tool message, stored as it is settled). If the run stops
        meanwhile the call stays pending, for _close_open_calls to withdraw."""
        future: asyncio.Future[ToolCallRecord] = asyncio.get_running_loop().create_future()
        async with self.hub.batch():
            record = await self.store.create_tool_call(
                self.conversation_id, self.run_id, call.id, call.name, arguments
            )
            self.pending[record.id] = future
            if answers_model:
                self._answers_model.add(record.id)
            await self.hub.publish(self.request_for(record))
        asked = time.perf_counter()
        try:
            return await self._interruptible(
                asyncio.wait_for(asyncio.shield(future), self.spec.approval_timeout_s)
            )
        except TimeoutError:
            waited = self.spec.approval_timeout_s
            reason = f"no answer within {waited:.0f} s, so the request timed out"
            return await self.withdraw(record.id, reason)
        finally:
            metrics = self.metrics
            self._waited_for(asked, metrics.tool_wait_seconds if metrics is not None else None)

    async def accept_result(
        self,
        call_id: str,
        status: str,
        content: str,
        reason: str | None,
        approval: ApprovalRecord | None = None,
    ) -> bool:
        """The executor's answer (stored with how it was approved); False when no pending call
        of this run has that id."""
        future = self.pending.get(call_id)
        if future is None or future.done():
            return False
        try:
            async with self.hub.batch():  # the result, its event and tool message: one commit
                record = await self.store.settle_tool_call(
                    call_id, status, content, reason, approval
                )
                if record is not None:
                    await self._record_settled(record)
        except Exception as exc:  # the run must go on: the model is told the output is lost
            log.exception("run %s: storing the result of %s failed", self.run_id, call_id)
            await self._settle_unstored(call_id, status, exc)
            return True
        if record is None:
            return False
        self._resume(record)
        return True

    async def withdraw(self, call_id: str, why: str) -> ToolCallRecord:
        """Stop waiting for a client call. Its executor is told to stop it and say what
        happened; that answer is recorded if it comes within the grace, else the outcome is
        recorded as unknown (the call may have run), never as "not run"."""
        future = self.pending.get(call_id)
        await self.hub.publish(ToolWithdrawn(run_id=self.run_id, call_id=call_id, reason=why))
        if future is not None and self.hub.present(self.executor.id):
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), self.spec.withdraw_grace_s)
        record = await self.store.get_tool_call(call_id)
        if record is not None and approve_only(record.tool):  # the server never ran it
            return await self._settle_by_server(call_id, "denied", not_approved(why))
        return await self._settle_by_server(call_id, "unknown", unknown_outcome(why))

    async def _settle_unstored(self, call_id: str, status: str, failure: Exception) -> None:
        """Settle a call whose result the database refused as an error the model reads; if
        even that fails, the run ends (model_error) instead of waiting for the timeout."""
        ran = "ran on the client" if status == "ok" else f"ended on the client ({status})"
        reason = (
            f"the call {ran}, but the server could not store its result, so the output is "
            f"lost ({describe_failure(failure)})"
        )
        try:
            await self._settle_by_server(call_id, "error", reason)
        except Exception as again:
            future = self.pending.get(call_id)
            if future is not None and not future.done():
                future.set_exception(again)

    async def _settle_by_server(self, call_id: str, status: str, reason: str) -> ToolCallRecord:
        async with self.hub.batch():
            record = await self.store.settle_tool_call(call_id, status, "", reason)
            if record is not None:
                await self._record_settled(record)
        if record is None:  # the executor answered first (or its answer was stored and only
            existing = await self.store.get_tool_call(call_id)  # telling the clients failed):
            assert existing is not None  # its answer stands, and the run goes on with it
            self._resume(existing)
            return existing
        self._resume(record)
        return record

    async def _record_settled(self, record: ToolCallRecord) -> None:
        """In the transaction that settles a client call: tell the clients (an approval-only
        call's run tells how it ended), and store the result of a call of the model as its
        tool message."""
        if not approve_only(record.tool):
            await self.hub.publish(settled_event(record))
        if record.id in self._answers_model:
            await self.store.add_message(self.conversation_id, self.run_id, tool_message(record))

    def _resume(self, record: ToolCallRecord) -> None:
        """Let the run go on with a settled call, once its transaction committed."""
        self._answers_model.discard(record.id)
        future = self.pending.pop(record.id, None)
        if future is not None and not future.done():
            future.set_result(record)

    # ------------------------------------------------------------------ stopping

    def _check_stop(self) -> None:
        if self._stop is not None:
            raise RunInterrupted

    async def _interruptible(self, work: Awaitable[T]) -> T:
        """Await `work`, abandoning it at once if the run is asked to stop."""
        if self._stop is not None:
            if inspect.iscoroutine(work):
                work.close()  # never started: closed, not left unawaited
            raise RunInterrupted
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise RunInterrupted
        return task.result()

    async def _close_open_calls(self, reason: str) -> None:
        """Leave the conversation well-formed: partial text kept, every call answered (with
        what its executor says happened when it says so), then the notes that waited."""
        if self._partial_text:
            await self._record_assistant(self._partial_text + " …[interrupted]", [])
            self._partial_text = ""
        for record in await self.store.pending_tool_calls(self.conversation_id):
            if record.run_id == self.run_id:
                await self.withdraw(record.id, reason)
        await close_dangling_calls(self.store, self.conversation_id, self.run_id, reason)
        self._notes_closed = True
        await self._store_notes()

    async def _store_notes(self) -> None:
        while self._notes:
            await self.store.add_event_message(
                self.conversation_id, self.run_id, self._notes.pop(0)
            )


def nobody_to_ask(tool: str) -> str:
    """Why a call that needs its client's approval was refused at once."""
    return (
        f"not run: {tool} needs the approval of the client that started this run (its "
        "policy or its person), and that client is not connected"
    )


def not_approved(why: str) -> str:
    """The reason stored for an approval-only call whose decision never came."""
    return f"nobody approved it, so the server did not run it ({why})"


async def _cancel_all(tasks: Iterable[asyncio.Task[T]]) -> None:
    """Cancel what is left of `tasks` and wait until each has stopped."""
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def unknown_outcome(why: str) -> str:
    """The reason stored for a call the server stopped waiting for without an answer."""
    return f"the client did not report whether it ran ({why})"


def settled_event(record: ToolCallRecord) -> ToolSettled:
    """How clients hear of a settled call; an unknown outcome travels as an error."""
    status = "error" if record.status == "unknown" else record.status
    return ToolSettled(
        run_id=record.run_id,
        call_id=record.id,
        status=cast(ToolStatus, status),
        reason=record.reason,
    )


async def close_dangling_calls(
    store: Store, conversation_id: str, run_id: str | None, reason: str
) -> int:
    """Give every unanswered call of the last assistant message a result: what its client
    tool call ended with, or "not run" for a call no client was ever asked to run."""
    messages = await store.list_messages(conversation_id)
    missing = missing_tool_results(messages)
    asked = {r.model_call_id: r for r in await store.tool_calls_of_run(run_id)} if run_id else {}
    for call in missing:
        record = asked.get(call.id)
        message = (
            tool_message(record)
            if record is not None
            else ModelMessage("tool", not_run(reason), tool_call_id=call.id, is_error=True)
        )
        await store.add_message(conversation_id, run_id, message)
    return len(missing)


def late_result_note(record: ToolCallRecord) -> str:
    """What the model is told when the result of a call of unknown outcome arrives late."""
    return (
        f"[client] The {record.tool} call {record.model_call_id}, whose outcome was unknown, "
        f"did reach its client; the result it recorded:\n{tool_message(record).content}"
    )


def missing_tool_results(messages: list[Message]) -> list[ToolCall]:
    last_calls: list[ToolCall] = []
    answered: set[str] = set()
    for message in messages:
        if message.role == "assistant":
            last_calls = list(to_model_message(message).tool_calls)
            answered = set()
        elif message.role == "tool" and message.tool_call_id:
            answered.add(message.tool_call_id)
    return [c for c in last_calls if c.id not in answered]


def _model_calls(count: int) -> str:
    return f"{count} model call" + ("" if count == 1 else "s")


def _canonical_arguments(call: ToolCall) -> str:
    """The call's arguments in one spelling, so key order or spacing hide no repeat."""
    if isinstance(call.parsed, MalformedArguments):
        return call.arguments
    return json.dumps(call.parsed, sort_keys=True)


def _tool_error(call: ToolCall, message: str) -> ModelMessage:
    return ModelMessage("tool", f"Error: {message}", tool_call_id=call.id, is_error=True)


def tool_message(record: ToolCallRecord) -> ModelMessage:
    """The result of a client tool call as the model reads it."""
    call_id = record.model_call_id
    if record.status == "ok":
        return ModelMessage("tool", record.content, tool_call_id=call_id)
    if record.status == "denied":
        text = (
            f"The user's side denied this {record.tool} call. "
            f"Reason: {record.reason or 'none given'}"
        )
        return ModelMessage("tool", text, tool_call_id=call_id, is_error=True)
    if record.status == "error":
        detail = record.reason or "the tool failed"
        body = f"Error: {detail}" + (f"\n{record.content}" if record.content else "")
        return ModelMessage("tool", body, tool_call_id=call_id, is_error=True)
    text = (
        f"Outcome unknown: {record.reason or unknown_outcome('no answer')}. This {record.tool} "
        "call may have run, completely or in part: check its effects (the files it would "
        "change, the output it would leave) before running it again."
    )
    return ModelMessage("tool", text, tool_call_id=call_id, is_error=True)


def counted_if_unreported(
    reported: Usage, prompt_tokens: int, text: str, calls: list[ToolCall], model: str
) -> Usage:
    """The usage the provider reported; when its stream reported none (some local servers
    send no usage), our own count of the request and the answer, so the run's token and
    cost limits still hold."""
    if reported.input_tokens or reported.output_tokens:
        return reported
    answer = text + "".join(call.name + call.arguments for call in calls)
    counted = Usage(input_tokens=prompt_tokens, output_tokens=count_tokens(answer))
    return counted.model_copy(update={"cost_usd": cost_usd(model, counted)})
