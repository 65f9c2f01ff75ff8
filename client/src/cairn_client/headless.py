"""Headless mode: `cairn -p "request"` runs one request and prints the answer.

Owns the listener that prints text (or JSON lines) and denies whatever needs a person, the
request's `@file` attachments, and what the command table's headless commands do
(`/compact [focus]`, `/init [focus]`, `/model [name]`, `/reflect`, `/help`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any, TextIO, TypeVar

from cairn_protocol import (
    AssistantDelta,
    AssistantMessage,
    ContextCompacted,
    ErrorEvent,
    HistoryToolCall,
    ModelRetry,
    RunFinished,
    ServerFrame,
    ToolRequest,
    ToolSettled,
    Welcome,
)
from cairn_protocol.messages import TRANSIENT_EVENT_TYPES, ToolStatus, UserCommand
from cairn_protocol.tools import FETCH_URL

from cairn_client import commands
from cairn_client.errors import CairnError, ExitCode, exit_code_for_stop
from cairn_client.formatting import (
    CONTINUE_HEADLESS,
    STATUS_SYMBOLS,
    compaction_line,
    describe_call,
    retry_label,
    run_ending,
    whose,
)
from cairn_client.listener import ConnectionState, RunFollower, RunRefused
from cairn_client.mentions import mentions
from cairn_client.models import unusable_model
from cairn_client.policy.types import Approval, Verdict
from cairn_client.session import ClientSession, SessionFailed
from cairn_client.tools.base import PreparedCall, ToolOutcome

T = TypeVar("T")

NEEDS_A_PERSON = (
    "this call needs approval and cairn is running headless with nobody to ask; "
    "allow it with --approve edits|all or an allow rule in your settings.toml"
)


def needs_a_person(verdict: Verdict) -> str:
    """Why a headless run denied a call that asks: what only a person may allow (leaving the
    sandbox, a protected path) says why; anything else says what would let it run."""
    if verdict.options.session is None and verdict.options.rule is None:
        return (
            f"this call needs approval ({verdict.reason}) and cairn is running headless with "
            "nobody to ask; only a person can allow it"
        )
    if verdict.options.rule is not None and verdict.options.rule.startswith(f"{FETCH_URL}("):
        return (
            "this fetch needs approval and cairn is running headless with nobody to ask; "
            f"allow it with the rule {verdict.options.rule} in your settings.toml, or "
            "--approve all"
        )
    return NEEDS_A_PERSON


COMPACT_REFUSALS = frozenset({"nothing_to_compact", "run_in_progress"})


# How long Ctrl-C waits for the cancel to reach the server before leaving anyway.
CANCEL_WAIT_S = 5.0
# How long a failure the listener heard waits for the session's own error (which says more).
FAILURE_WAIT_S = 1.0


class HeadlessListener:
    """Prints the run; `finished` resolves with the RunFinished of the request it sent."""

    def __init__(
        self, *, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err
        self.welcome: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self.run = RunFollower()
        # /compact's answer: the compaction, or the server's refusal.
        self.compacted: asyncio.Future[ContextCompacted | ErrorEvent] = (
            asyncio.get_running_loop().create_future()
        )
        self.fatal: str | None = None
        self._printed = ""  # the streamed text of the step, as printed
        # The model's calls by its ids, for the ones no client runs (settled by the server).
        self._model_calls: dict[str, HistoryToolCall] = {}
        self._expecting_compaction = False

    @property
    def finished(self) -> asyncio.Future[RunFinished]:
        """Resolves with the RunFinished of the run followed now."""
        return self.run.finished

    def expect_run_for(self, text: str) -> None:
        """Follow the run the server starts for `text` (a fresh `finished` each time)."""
        self.run.follow(text=text)

    def follow_run(self, run_id: str) -> None:
        """Follow a run already going (found in the welcome after a restart)."""
        self.run.follow(run_id=run_id)

    def expect_compaction(self) -> None:
        self._expecting_compaction = True

    # ------------------------------------------------------------------ SessionListener

    def server_event(self, event: ServerFrame) -> None:
        if isinstance(event, Welcome):
            if not self.welcome.done():
                self.welcome.set_result(event)
            return
        if self._expecting_compaction and self._settles_compaction(event):
            return
        if not self.run.sees(event):
            if isinstance(event, ErrorEvent):
                self._emit_error(event)
            elif self.as_json and isinstance(event, ToolRequest) and event.helper is not None:
                self._line(self._json_event(event))  # a helper's: its run is not the one followed
            return
        if self.as_json:
            self._line(self._json_event(event))
        else:
            self._print_text(event)

    def _settles_compaction(self, event: ServerFrame) -> bool:
        """Print and settle /compact's answer; False for any other event."""
        requested = isinstance(event, ContextCompacted) and event.trigger == "requested"
        refused = isinstance(event, ErrorEvent) and event.code in COMPACT_REFUSALS
        if not (requested or refused) or self.compacted.done():
            return False
        assert isinstance(event, ContextCompacted | ErrorEvent)
        if self.as_json:
            self._line(self._json_event(event))
        elif isinstance(event, ContextCompacted):
            print(compaction_line(event), file=self.out, flush=True)
        else:
            print(f"cairn: {event.message}", file=self.err, flush=True)
        self.compacted.set_result(event)
        return True

    def notice(self, text: str) -> None:
        print(f"cairn: {text}", file=self.err, flush=True)

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        if state == "reconnecting":
            print(f"cairn: {detail}", file=self.err, flush=True)
        if state == "failed":  # told by whoever waits for one of these
            self.fatal = detail
            for future in (self.welcome, self.finished, self.compacted):
                if not future.done():
                    future.set_exception(SessionFailed(detail))
                    future.exception()  # nobody waiting for this one is not an error

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        if self.as_json:
            self._line(
                {
                    "type": "tool_handled",
                    "call_id": prepared.request.call_id,
                    "tool": prepared.tool,
                    "arguments": prepared.request.arguments,
                    "decision": verdict.decision,
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "helper": helper.label if (helper := prepared.request.helper) else None,
                }
            )
            return
        title = whose(prepared.request.helper) + prepared.preview.title
        self._print_call(outcome.status, title, outcome.reason)

    def _print_call(self, status: ToolStatus, title: str, reason: str | None) -> None:
        """`✓ Read src/app.py`, `! read: <why>`: one line on stderr per call that ended."""
        tail = f": {reason}" if reason and status != "ok" else ""
        print(f"{STATUS_SYMBOLS[status]} {title}{tail}", file=self.err, flush=True)

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        return Approval("deny", needs_a_person(verdict), by_person=False)

    # ------------------------------------------------------------------ printing

    def _print_text(self, event: ServerFrame) -> None:
        if isinstance(event, AssistantDelta):
            self.out.write(event.text)
            self.out.flush()
            self._printed += event.text
        elif isinstance(event, AssistantMessage):
            # What streaming left out (the connection dropped mid-answer) comes from the
            # message; a mismatch (output discarded by a retry) is printed whole.
            if event.text.startswith(self._printed):
                self.out.write(event.text[len(self._printed) :])
            elif event.text:
                self.out.write("\n" + event.text)
            if event.text:
                self.out.write("\n")
            self.out.flush()
            self._printed = ""
            self._model_calls = {call.call_id: call for call in event.tool_calls}
        elif isinstance(event, ToolSettled) and event.call_id in self._model_calls:
            # A call no client ran: a server tool, or one the server refused.
            call = self._model_calls.pop(event.call_id)
            self._print_call(event.status, describe_call(call.tool, call.arguments), event.reason)
        elif isinstance(event, ModelRetry):
            print(f"cairn: {retry_label(event)}", file=self.err, flush=True)
            if event.discarded_output and self._printed:
                # Printed text cannot be taken back: say so, and restart on a fresh line.
                self.out.write("\n")
                self.out.flush()
                self._printed = ""
                print("cairn: the partial answer above is void; it starts again", file=self.err)
        elif isinstance(event, RunFinished):
            ending = run_ending(event, CONTINUE_HEADLESS)
            if ending is not None:
                print(f"cairn: {ending}", file=self.err, flush=True)

    def _emit_error(self, event: ErrorEvent) -> None:
        if self.as_json:
            self._line(self._json_event(event))
        else:
            print(f"cairn: server error ({event.code}): {event.message}", file=self.err, flush=True)

    def _json_event(self, event: ServerFrame) -> dict[str, Any]:
        """One `--json` line: the event as the server sent it, except that a transient event
        carries no seq (it repeats the last durable one's), so every seq printed is unique, and
        run_finished adds the run's final text and the conversation's id."""
        payload = event.model_dump(mode="json")
        if event.type in TRANSIENT_EVENT_TYPES:
            payload.pop("seq", None)
        if isinstance(event, RunFinished):
            payload["text"] = self.run.last_answer
            welcomed = self.welcome.done() and self.welcome.exception() is None
            payload["conversation_id"] = self.welcome.result().conversation_id if welcomed else None
        return payload

    def _line(self, payload: object) -> None:
        self.out.write(json.dumps(payload) + "\n")
        self.out.flush()


async def run_headless(session: ClientSession, listener: HeadlessListener, prompt: str) -> int:
    """Send one request (or run one command) and wait for its answer.

    Exit code (errors.ExitCode): 0 answered, 1 the run did not finish, 2 unusable (no model,
    a command headless mode lacks, no server), 3 the model failed or a token was refused."""
    for note in session.startup_notes():
        print(f"cairn: {note}", file=listener.err)
    runner = asyncio.create_task(session.run())
    requests = HeadlessRequests(session, listener, runner)
    try:
        invocation = commands.parse(prompt)
        if invocation is None:
            return await requests.send(await requests.with_files(prompt), None)
        return await commands.run_headless(invocation, requests)
    except RunRefused as exc:  # the listener has printed the server's error
        return ExitCode.USAGE if exc.code == "no_model" else ExitCode.FAILED
    except SessionFailed as exc:
        print(f"cairn: {exc}", file=listener.err)
        return exc.exit_code
    except asyncio.CancelledError:  # Ctrl-C: the run stops on the server too, not only here
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.cancel(), CANCEL_WAIT_S)
        print("cairn: cancelled", file=listener.err, flush=True)
        raise
    finally:
        await session.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


class HeadlessRequests:
    """Implements the command table's HeadlessHost over a running session."""

    def __init__(
        self, session: ClientSession, listener: HeadlessListener, runner: asyncio.Task[None]
    ) -> None:
        self.session = session
        self.listener = listener
        self.runner = runner

    def show_help(self, lines: list[str]) -> int:
        print("\n".join(lines), file=self.listener.out, flush=True)
        return 0

    def refuse(self, line: str) -> int:
        print(f"cairn: {line}", file=self.listener.err, flush=True)
        return ExitCode.USAGE

    async def send_init(self, text: str) -> int:
        return await self.send(text, "init")

    async def with_files(self, text: str) -> str:
        """`text` with the files it `@mentions` attached; each file attached, or why not, is
        one line on stderr."""
        if not mentions(text):
            return text
        from cairn_client.mentions import attach_mentions

        workspace = self.session.workspace.root
        attached = await attach_mentions(text, workspace, self.session.policy)
        for line in attached.notices():
            print(f"cairn: {line}", file=self.listener.err, flush=True)
        return attached.text

    async def send(self, text: str, command: UserCommand | None) -> int:
        """0 when the run ended its turn, 3 for a model error (or one its provider does not
        have), 1 when it stopped otherwise, 2 without a usable model."""
        welcome = await session_result(self.listener.welcome, self.runner)
        unusable = unusable_model(welcome)
        if unusable is not None:
            # A model the provider lacks is one line; a configuration problem says how to fix it.
            said = f"cairn: {unusable.message}" if welcome.model_not_offered else str(unusable)
            print(said, file=self.listener.err)
            return unusable.exit_code
        self.listener.expect_run_for(text)
        await self.session.send_user_message(text, command)
        finished = await session_result(self.listener.finished, self.runner)
        return exit_code_for_stop(finished.stop_reason)

    async def model(self, name: str) -> int:
        """`/model` prints the agent's model and the server's default; `/model NAME` switches
        it: 0, or (one line on stderr) 3 when its provider does not have it, 2 when the server
        cannot run it otherwise."""
        from cairn_client.api import CairnApi  # httpx: only for this command
        from cairn_client.models import model_line, set_model, switched_line

        welcome = await session_result(self.listener.welcome, self.runner)
        endpoint = self.session.endpoint
        async with CairnApi(endpoint.resolve, endpoint.token) as api:
            try:
                if not name:
                    agent = await api.get_agent(welcome.agent_id)
                    line = model_line(agent)
                else:
                    line = switched_line(await set_model(api, welcome.agent_id, name))
            except CairnError as exc:
                print(f"cairn: {exc.message}", file=self.listener.err, flush=True)
                return exc.exit_code
        print(line, file=self.listener.out, flush=True)
        return 0

    async def reflect(self) -> int:
        """Reflect on the conversation now and print what it did and cost: 0 when it ended,
        1 when it failed (or one was running already), 2 when the server cannot be asked."""
        from cairn_client.api import CairnApi  # httpx: only for this command
        from cairn_client.formatting import reflection_lines

        welcome = await session_result(self.listener.welcome, self.runner)
        endpoint = self.session.endpoint
        async with CairnApi(endpoint.resolve, endpoint.token) as api:
            try:
                reflection = await api.reflect(welcome.conversation_id)
            except CairnError as exc:
                print(f"cairn: {exc.message}", file=self.listener.err, flush=True)
                return exc.exit_code
        print("\n".join(reflection_lines(reflection)), file=self.listener.out, flush=True)
        return ExitCode.OK if reflection.status == "finished" else ExitCode.FAILED

    async def compact(self, focus: str | None) -> int:
        """0 when the conversation was compacted, 1 when the server refused (no model needed:
        the digest is the fallback)."""
        await session_result(self.listener.welcome, self.runner)
        self.listener.expect_compaction()
        await self.session.compact(focus)
        answer = await session_result(self.listener.compacted, self.runner)
        return ExitCode.OK if isinstance(answer, ContextCompacted) else ExitCode.FAILED


async def session_result(future: asyncio.Future[T], runner: asyncio.Task[None]) -> T:
    """The future's value, or the runner's failure if the session ends first."""
    waiting: set[asyncio.Future[Any]] = {future, runner}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if future.done() and isinstance(future.exception(), SessionFailed):
        # The listener heard the failure first; the session's own error, raised a moment
        # later, carries its exit code (a refused token is not an unreachable server).
        await asyncio.wait({runner}, timeout=FAILURE_WAIT_S)
        if runner.done() and not runner.cancelled():
            runner.result()
    if future.done():
        return future.result()
    runner.result()  # raises the session's failure
    raise SessionFailed("the session ended before the answer arrived")
