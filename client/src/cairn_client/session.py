"""A client session: one websocket to the server, kept alive, and local tool handling.

Owns the handshake (as one client id across reconnects), reconnection with resume, and
turning the tool requests this client executes into results through the policy, the person
(via the listener) and the local tools (or, for a call the server runs once approved, into
the approval alone): at most once per call_id even across a restart
(call_log), stopped when withdrawn, reported late when the server lost the answer, each with
the record of how it was approved; and /undo of the changes it applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cairn_protocol import (
    CLIENT_TOOLS,
    PROTOCOL_VERSION,
    Cancel,
    Compact,
    ErrorEvent,
    FrameError,
    Hello,
    ToolRequest,
    ToolResult,
    ToolSettled,
    ToolWithdrawn,
    UserMessage,
    Welcome,
    parse_server_frame,
)
from cairn_protocol.messages import (
    APPROVAL_SHOWN_LIMIT,
    CLOSE_UNAUTHORIZED,
    FATAL_CLOSE_CODES,
    HELPER_WORKTREE_TOOL,
    TRANSIENT_EVENT_TYPES,
    ApprovalAnswer,
    ApprovalRecord,
    DecidedBy,
    Frame,
    UserCommand,
)
from cairn_protocol.redaction import load_detectors, redact
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from cairn_client.call_log import CallLog
from cairn_client.config import websocket_url
from cairn_client.errors import CairnError, ExitCode
from cairn_client.helper_worktrees import HelperWorktreeError, HelperWorktrees
from cairn_client.listener import SessionListener
from cairn_client.mcp.servers import McpServers
from cairn_client.policy.policy import EDIT_TOOLS, Policy
from cairn_client.policy.settings import SettingsError
from cairn_client.policy.types import Approval, Mode, Verdict
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_client.tools.registry import (
    ShellPlacement,
    execute_call,
    prepare_call,
    redact_outcome,
)
from cairn_client.undo import AppliedChange, UndoStack
from cairn_client.workspace import Workspace

log = logging.getLogger(__name__)

RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
MAX_RECONNECT_ATTEMPTS = 30
# A server never reached is said at once (a wrong URL, nothing listening); only a session
# that was connected keeps retrying, since its server is coming back.
FIRST_CONNECT_TIMEOUT_S = 4.0
CONNECT_TIMEOUT_S = 10.0
CONNECT_WAIT_S = 30.0  # how long a message typed before the connection is up may wait
# Errors that answer a tool_result the server no longer wanted (a late or handed-over call).
_STALE_ANSWER_CODES = frozenset({"unknown_call", "not_executor"})


@dataclass(frozen=True)
class Endpoint:
    """Where the server is: `resolve` returns its http(s) URL, (re)starting it if embedded."""

    token: str
    resolve: Callable[[], Awaitable[str]]


class SessionFailed(CairnError, RuntimeError):
    """The session cannot go on: a server never reached or one that refused it (exit 2, or 3
    for a refused token), or a connection lost for good (exit 1)."""

    exit_code = ExitCode.USAGE


class NotConnected(CairnError, RuntimeError):
    pass


class ClientSession:
    """Implements SessionControl; `run()` lives for the whole session."""

    def __init__(
        self,
        endpoint: Endpoint,
        workspace: Workspace,
        policy: Policy,
        listener: SessionListener,
        conversation: str = "latest",
        *,
        call_log: CallLog,
        interactive: bool = False,
        notes: Sequence[str] = (),
        mcp: McpServers | None = None,
    ) -> None:
        self.endpoint = endpoint
        # The MCP servers this session starts before its first hello and offers the tools of.
        self.mcp = mcp
        self._notes = list(notes)  # about the launch (the local server restarted), shown first
        self.workspace = workspace
        self.policy = policy
        self.listener = listener
        self.conversation = conversation
        # The TUI's session: the server reopens the conversation it last had open there.
        self.interactive = interactive
        self._switching = False  # the socket was closed to open another conversation
        self.last_seq: int | None = None
        # Names this client in every hello, so a reconnect keeps running its own requests.
        self.client_id = f"cli_{secrets.token_hex(8)}"
        self._socket: ClientConnection | None = None
        self._closing = False
        self._detectors_loading = False  # the secret detectors, loaded on the first message
        self._results: dict[str, ToolResult] = {}
        # Executed calls survive a restart here: a successor never runs one twice.
        self.call_log = call_log
        self.undo_stack = UndoStack(workspace.root)
        # The worktrees of the helpers (may_edit) whose requests this client runs.
        self.helper_worktrees = HelperWorktrees(workspace.root, policy.sandbox.environ)
        # Told to the model with the next message: what the user did to its work meanwhile.
        self.pending_notes: list[str] = []
        self._in_flight: set[str] = set()
        self._executed: set[str] = set()
        # Calls this client must not start, with why (settled, withdrawn, handed over).
        self._withdrawn: dict[str, str] = {}
        self._commands: dict[str, asyncio.Task[ToolOutcome]] = {}  # shell calls running now
        self._killed: set[str] = set()  # those stopped because they were withdrawn
        self._tasks: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        self.ever_connected = False
        self._base = ""  # the server's URL, once reached

    # ------------------------------------------------------------------ SessionControl

    async def send_user_message(self, text: str, command: UserCommand | None = None) -> None:
        """Send a request, waiting a little for the connection if it is still being made."""
        await self._wait_connected()
        await self._send(UserMessage(text=text, command=command, notes=self.pending_notes))
        if not self._detectors_loading:  # their imports (~0.3 s) while the model thinks, not
            self._detectors_loading = True  # at the first tool result, which redacts
            threading.Thread(target=load_detectors, name="load-detectors", daemon=True).start()
        self.pending_notes = []

    async def compact(self, instructions: str | None = None) -> None:
        """Ask for a compaction now; the answer is a context_compacted event or an error."""
        await self._wait_connected()
        await self._send(Compact(instructions=instructions))

    async def cancel(self) -> None:
        await self._send(Cancel())

    async def switch_conversation(self, conversation: str) -> None:
        """Leave this conversation for `conversation` ("new" or an id of the same agent):
        the session reconnects with a hello for it, and its welcome (with its history) is
        the next event. Tool requests of the conversation left behind are no longer run."""
        self.conversation = conversation
        self.last_seq = None
        self._switching = True
        socket = self._socket
        if socket is not None:
            await socket.close()

    async def undo_last_change(self) -> AppliedChange:
        """Revert the last change this session applied; UndoRefused says why not.

        The model is told with the next message, so it does not build on the reverted edit."""
        undone = await asyncio.to_thread(self.undo_stack.undo_last)
        self.pending_notes.append(undone.note_for_model())
        return undone

    @property
    def mode(self) -> Mode:
        return self.policy.mode

    def set_mode(self, mode: Mode) -> None:
        self.policy.set_mode(mode)

    def startup_notes(self) -> list[str]:
        """What the person must know once, at start: the local server, the workspace, settings,
        the sandbox."""
        workspace = self.workspace.startup_note()
        return [*self._notes, *([workspace] if workspace else []), *self.policy.startup_notes()]

    @property
    def settings_file(self) -> str:
        return self.policy.settings.user_file_shown

    async def close(self) -> None:
        self._closing = True
        if self._socket is not None:
            await self._socket.close()

    # ------------------------------------------------------------------ the connection

    async def run(self) -> None:
        """Start the MCP servers, then connect and keep the session alive across drops until
        close() or a refusal; the MCP servers stop with it."""
        try:
            await self._start_mcp()
            await self._serve()
        finally:
            if self.mcp is not None:
                await self.mcp.stop()

    async def _start_mcp(self) -> None:
        """Each MCP server that cannot start is one line for the person; the rest work."""
        if self.mcp is None:
            return
        for note in await self.mcp.start():
            self.listener.notice(note)

    async def _serve(self) -> None:
        failures = 0
        while not self._closing:
            self.listener.connection_changed(
                "connecting" if failures == 0 else "reconnecting", "connecting to the server"
            )
            try:
                await self._connect_and_serve()
                failures = 0
            except SessionFailed as exc:
                self.listener.connection_changed("failed", str(exc))
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                if self._closing:
                    break
                if self._switching:  # closed on purpose: open the other conversation now
                    self._switching = False
                    failures = 0
                    continue
                failures += 1
                if failures > MAX_RECONNECT_ATTEMPTS:
                    lost = (
                        f"lost the connection to the server at {self._base} and gave up "
                        f"reconnecting after {MAX_RECONNECT_ATTEMPTS} tries ({_describe(exc)})"
                    )
                    self.listener.connection_changed("failed", lost)
                    raise SessionFailed(lost, ExitCode.FAILED) from exc
                self.listener.connection_changed("reconnecting", _describe(exc))
                await asyncio.sleep(RECONNECT_DELAYS_S[min(failures, len(RECONNECT_DELAYS_S)) - 1])
        self.listener.connection_changed("closed", "session closed")

    async def _connect_and_serve(self) -> None:
        base = await self.endpoint.resolve()
        url = websocket_url(base)
        try:
            timeout = CONNECT_TIMEOUT_S if self.ever_connected else FIRST_CONNECT_TIMEOUT_S
            socket = await connect(url, open_timeout=timeout, max_size=None)
        except InvalidURI as exc:
            raise SessionFailed(f"bad server URL {url!r}: {exc}") from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            if self.ever_connected:
                raise
            raise SessionFailed(f"cannot reach the server at {base}: {_describe(exc)}") from exc
        self._base = base
        self._socket = socket
        try:
            await self._handshake(socket)
            self.ever_connected = True
            self.connected.set()
            self.listener.connection_changed("connected", "connected")
            async for raw in socket:
                await self._receive(raw)
            if socket.close_code in FATAL_CLOSE_CODES:
                raise _refused(socket.close_code, socket.close_reason)
            raise ConnectionError("the server closed the connection")
        except ConnectionClosed as exc:
            self._raise_if_refused(exc)
            raise
        finally:
            self.connected.clear()
            self._socket = None

    async def _handshake(self, socket: ClientConnection) -> None:
        hello = Hello(
            protocol_version=PROTOCOL_VERSION,
            token=self.endpoint.token,
            workspace=self.workspace.identity,
            tools=list(CLIENT_TOOLS),
            mcp_tools=self.mcp.offers() if self.mcp is not None else [],
            conversation=self.conversation,
            interactive=self.interactive,
            resume_after=self.last_seq,
            client_id=self.client_id,
        )
        await socket.send(hello.model_dump_json())
        try:
            first = parse_server_frame(await asyncio.wait_for(socket.recv(), 30))
        except FrameError as exc:
            raise SessionFailed(f"the server sent an unreadable welcome: {exc.message}") from exc
        if isinstance(first, ErrorEvent):
            with contextlib.suppress(Exception):
                await socket.wait_closed()
            if first.code == "internal":  # e.g. its database was briefly away: try again
                raise ConnectionError(first.message)
            code = CLOSE_UNAUTHORIZED if first.code == "unauthorized" else None
            raise _refused(code, first.message)
        if not isinstance(first, Welcome):
            raise SessionFailed(f"expected welcome from the server, got {first.type}")
        first_welcome = self.last_seq is None
        self.conversation = first.conversation_id  # a reconnect continues this conversation
        self.client_id = first.client_id
        if first_welcome:
            self.last_seq = first.seq
        self.listener.server_event(first)
        for request in first.pending_tool_requests:  # e.g. asked before cairn was restarted
            self._take(request)
        for call_id in first.unknown_outcomes:  # e.g. ran here while the server restarted
            self._spawn(self._report_outcome(call_id))

    def _raise_if_refused(self, exc: ConnectionClosed) -> None:
        received = exc.rcvd
        if received is not None and received.code in FATAL_CLOSE_CODES:
            raise _refused(received.code, received.reason) from exc

    # ------------------------------------------------------------------ incoming

    async def _receive(self, raw: str | bytes) -> None:
        try:
            event = parse_server_frame(raw)
        except FrameError as exc:
            log.warning("unreadable frame from the server: %s", exc.message)
            return
        if event.type not in TRANSIENT_EVENT_TYPES:
            if self.last_seq is not None and event.seq <= self.last_seq:
                return  # already seen before a reconnect
            self.last_seq = event.seq
        if isinstance(event, ToolSettled):  # not to be started any more; a run ends itself
            self._withdrawn.setdefault(event.call_id, event.reason or "it was settled")
        if isinstance(event, ToolWithdrawn):
            self._withdraw(event.call_id, event.reason)
        if isinstance(event, ToolRequest):
            self._take(event)
        if isinstance(event, ErrorEvent) and event.code in _STALE_ANSWER_CODES:
            log.info("the server did not want an answer: %s", event.message)
            return
        self.listener.server_event(event)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ tool requests

    def _take(self, request: ToolRequest) -> None:
        """Answer a request this client executes; any other is only shown (and if it was
        this client's before, it was handed over: it must not start, or stop)."""
        if request.executor == self.client_id:
            self._spawn(self._answer(request))
        elif request.call_id in self._in_flight:
            self._withdraw(request.call_id, "another client runs it now")

    def _withdraw(self, call_id: str, why: str) -> None:
        """The server stopped waiting for this call: it must not start, and a command that
        is running is killed (its result says so, with the output it had printed)."""
        self._withdrawn.setdefault(call_id, why)
        command = self._commands.get(call_id)
        if command is not None and not command.done():
            self._killed.add(call_id)
            command.cancel()  # run_shell kills its process group and reports what it printed

    async def _report_outcome(self, call_id: str) -> None:
        """Send the recorded result of a call the server closed without knowing whether it
        ran. A call still running here is reported when it ends; one never run here, never."""
        if call_id in self._in_flight:
            return
        result = self._results.get(call_id) or await asyncio.to_thread(
            self.call_log.completed, call_id
        )
        if result is not None:
            await self._send_quietly(result)

    async def _answer(self, request: ToolRequest) -> None:
        """Decide, maybe ask, execute, and answer one request; at most once per call_id."""
        if request.call_id in self._results:
            await self._send_quietly(self._results[request.call_id])
            return
        if request.call_id in self._in_flight:
            return
        self._in_flight.add(request.call_id)
        try:
            recorded = await asyncio.to_thread(self.call_log.recorded, request.call_id)
            if recorded is not None:  # executed by this or an earlier cairn process
                self._results[request.call_id] = recorded
                await self._send_quietly(recorded)
                return
            if request.tool == HELPER_WORKTREE_TOOL:
                await self._send_quietly(await self._worktree_report(request))
                return
            try:
                root = await asyncio.to_thread(self.helper_worktrees.root_for, request)
            except HelperWorktreeError as exc:
                await self._send_quietly(
                    ToolResult(call_id=request.call_id, status="error", reason=str(exc))
                )
                return
            prepared = await asyncio.to_thread(
                prepare_call, root, request, self._allowed_secrets, self.mcp
            )
            verdict, outcome, approval = await self._decide_and_run(prepared, root)
            result = ToolResult(
                call_id=request.call_id,
                status=outcome.status,
                content=outcome.content,
                reason=outcome.reason,
                approval=approval,
            )
            self._results[request.call_id] = result
            if request.call_id in self._executed:
                await asyncio.to_thread(self.call_log.finish, result)
                if (
                    outcome.status == "ok"
                    and prepared.tool in EDIT_TOOLS
                    and request.helper is None
                ):
                    self.undo_stack.record(request.call_id, prepared.tool, prepared.changes)
            if not request.approve_only:  # else its end comes with the server's tool_settled
                self.listener.tool_handled(prepared, verdict, outcome)
            await self._send_quietly(result)  # also when withdrawn: the server may still wait
        finally:
            self._in_flight.discard(request.call_id)

    async def _worktree_report(self, request: ToolRequest) -> ToolResult:
        """What a helper changed in its worktree (the server asks when the helper ends); no
        tool runs, nothing changes, so no policy decides it."""
        try:
            text = await asyncio.to_thread(self.helper_worktrees.report, request)
        except (HelperWorktreeError, CairnError) as exc:
            return ToolResult(call_id=request.call_id, status="error", reason=str(exc))
        return ToolResult(call_id=request.call_id, status="ok", content=redact(text)[0])

    def _remember(self, approval: Approval, prepared: PreparedCall) -> str:
        """Apply "for this session" or "always" to the policy; how far the allowance goes."""
        if approval.kind == "session":
            allowed = self.policy.allow_for_session(prepared)
            return "for this session" if allowed else "once (it always asks)"
        if approval.kind == "always":
            try:
                rule = self.policy.allow_always(prepared)
            except SettingsError as exc:
                return f"once (the rule was not saved: {exc})"
            return f"always (rule {rule} saved)" if rule else "once (no rule can cover it)"
        return "once"

    @property
    def _allowed_secrets(self) -> list[str]:
        """Secret files the user (never the repo) allowed tools to read, by settings."""
        return list(self.policy.settings.allow_secret_files)

    async def _decide_and_run(
        self, prepared: PreparedCall, root: Path
    ) -> tuple[Verdict, ToolOutcome, ApprovalRecord | None]:
        """The verdict, what the model gets, and the record of how it was decided (none for
        an invalid request: no policy or person decided on it)."""
        if prepared.error is not None:
            verdict = Verdict("deny", prepared.error)
            return verdict, ToolOutcome("error", reason=prepared.error), None
        verdict, record = await self._decide(prepared)
        if verdict.decision == "deny":  # the reason may quote a rule or what the person typed
            return verdict, redact_outcome(ToolOutcome("denied", reason=verdict.reason)), record
        call_id = prepared.request.call_id
        if call_id in self._withdrawn:
            reason = (
                f"not run: the request was withdrawn before it ran ({self._withdrawn[call_id]})"
            )
            return Verdict("deny", reason), ToolOutcome("denied", reason=reason), record
        if prepared.request.approve_only:  # approved: the server runs it, nothing runs here
            return verdict, ToolOutcome("ok"), record
        # Recorded before it runs: if this process dies now, a successor will not run it again.
        await asyncio.to_thread(self.call_log.start, call_id)
        self._executed.add(call_id)
        return verdict, await self._execute(prepared, root), record

    async def _execute(self, prepared: PreparedCall, root: Path) -> ToolOutcome:
        """Run an approved call in `root` (the checkout, or a helper's worktree); a shell
        command can be killed by _withdraw meanwhile."""
        call_id = prepared.request.call_id
        withheld = self.policy.search_filter(prepared.tool)
        placement = ShellPlacement(
            self.policy.sandbox,
            self.policy.network_allowed(prepared),
            self.policy.withheld_patterns(),
        )
        execution = asyncio.ensure_future(
            execute_call(
                root,
                prepared,
                self._allowed_secrets,
                withheld,
                placement=placement,
                mcp=self.mcp,
            )
        )
        if prepared.tool == "shell":
            self._commands[call_id] = execution
        try:
            outcome = await execution
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if call_id not in self._killed or (task is not None and task.cancelling()):
                raise  # this session is going away, not just the command
            # Withdrawn before its process started: nothing ran.
            outcome = ToolOutcome("error", reason="stopped before the command started")
        finally:
            self._commands.pop(call_id, None)
        if call_id in self._killed and outcome.status != "ok":
            why = self._withdrawn.get(call_id, "the request was withdrawn")
            stopped = f"approved and started, then {outcome.reason}: {why}"
            outcome = dataclasses.replace(outcome, reason=stopped)
        return outcome

    async def _decide(self, prepared: PreparedCall) -> tuple[Verdict, ApprovalRecord]:
        """The policy's verdict, or the person's when it asks, with the record of it.

        Nobody decided when no person could be asked (headless) or the server withdrew the
        request while the person was being asked."""
        verdict = self.policy.decide(prepared)
        if verdict.decision != "ask":
            return verdict, approval_record(prepared, verdict, "policy")
        asked_at = datetime.now(UTC)
        approval = await self.listener.ask_approval(prepared, verdict)
        if approval.kind == "deny":
            verdict = Verdict("deny", approval.reason or "denied by the user")
        else:
            verdict = Verdict("allow", f"allowed {self._remember(approval, prepared)} by the user")
        if not approval.by_person:
            return verdict, approval_record(prepared, verdict, "nobody")
        if prepared.request.call_id in self._withdrawn:
            return verdict, approval_record(prepared, verdict, "nobody", asked_at=asked_at)
        return verdict, approval_record(prepared, verdict, "user", approval.kind, asked_at)

    # ------------------------------------------------------------------ outgoing

    async def _wait_connected(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), CONNECT_WAIT_S)
        except TimeoutError:
            raise NotConnected(
                f"not connected to the server after {CONNECT_WAIT_S:.0f} s"
            ) from None

    async def _send(self, frame: Frame) -> None:
        socket = self._socket
        if socket is None or not self.connected.is_set():
            raise NotConnected("not connected to the server")
        await socket.send(frame.model_dump_json())

    async def _send_quietly(self, frame: Frame) -> None:
        """Send if connected; otherwise the server replays the request and we answer then."""
        with contextlib.suppress(NotConnected, ConnectionClosed):
            await self._send(frame)


def approval_record(
    prepared: PreparedCall,
    verdict: Verdict,
    decided_by: DecidedBy,
    answer: ApprovalAnswer | None = None,
    asked_at: datetime | None = None,
) -> ApprovalRecord:
    """What was decided on a call, by whom, and what was (or would have been) shown: the
    preview and the reason redacted, the preview cut, with the hash of the whole preview."""
    body = prepared.preview.body
    shown, _ = redact(body)
    if len(shown) > APPROVAL_SHOWN_LIMIT:
        note = f"\n[cut: the preview has {len(shown):,} characters]"
        shown = shown[: APPROVAL_SHOWN_LIMIT - len(note)] + note
    return ApprovalRecord(
        decision="deny" if verdict.decision == "deny" else "allow",
        decided_by=decided_by,
        answer=answer,
        reason=redact(verdict.reason)[0],
        shown_title=redact(prepared.preview.title)[0],
        shown=shown,
        content_hash="sha256:" + hashlib.sha256(body.encode()).hexdigest(),
        asked_at=asked_at,
        decided_at=datetime.now(UTC),
    )


def _refused(close_code: int | None, reason: str | None) -> SessionFailed:
    """The server ended the session for good: a refused token is 3, anything else 2."""
    exit_code = ExitCode.MODEL if close_code == CLOSE_UNAUTHORIZED else ExitCode.USAGE
    return SessionFailed(f"the server refused the session: {reason}", exit_code)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is None:
            return "the connection dropped"
        reason = f" ({exc.rcvd.reason})" if exc.rcvd.reason else ""
        return f"the server closed the connection{reason}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
