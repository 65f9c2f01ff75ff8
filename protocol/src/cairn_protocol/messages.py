"""Wire messages between the Cairn client and server.

Owns every frame that crosses the websocket: client frames, server events, and the
parsing helpers that turn raw JSON into them (or into a clear error).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cairn_protocol.mcp import TOOLS_PER_HELLO, McpToolOffer
from cairn_protocol.results import ResultPreview
from cairn_protocol.validation import validation_problems
from cairn_protocol.workspace import WorkspaceIdentity

PROTOCOL_VERSION = 6  # 6: tool_request.approve_only (fetch_url asks the client first)
# and tool_request.helper (a helper run's request, labelled);
# 5: welcome.context and .model_not_offered, tool_settled.result,
# hello.mcp_tools; 4: workspace.moved_from, stop reason "truncated", welcome.usage
# Seqs are 32-bit on the server; a resume_after above this is malformed.
MAX_SEQ = 2**31 - 1

# Websocket close codes: why the server ended a connection (docs/protocol.md, Close codes).
CLOSE_BAD_REQUEST = 4400  # unreadable or unknown first frame, not hello, wrong version
CLOSE_UNAUTHORIZED = 4401  # invalid, expired or revoked token
CLOSE_NOT_FOUND = 4404  # hello.conversation names no conversation of this codebase
CLOSE_HELLO_TIMEOUT = 4408  # no hello within 10 s
CLOSE_TOO_SLOW = 4413  # the client fell too far behind its events; reconnect with resume_after
CLOSE_INTERNAL = 1011  # the server failed while opening the session
# After these, reconnecting cannot help.
FATAL_CLOSE_CODES = frozenset({CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_NOT_FOUND})


class Frame(BaseModel):
    """Base of every frame: unknown fields are rejected so typos surface early."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- client → server


class Hello(Frame):
    """First frame of a connection: who the client is and what it can run."""

    type: Literal["hello"] = "hello"
    protocol_version: int
    token: str
    workspace: WorkspaceIdentity
    tools: list[str] = Field(description="Names of the client tools this client offers.")
    mcp_tools: list[McpToolOffer] = Field(
        default_factory=list,
        max_length=TOOLS_PER_HELLO,
        description="The tools of the client's MCP servers it offers, named "
        "mcp__<server>__<tool>; the client runs them like its own tools.",
    )
    conversation: str = Field(
        default="latest",
        description='"latest" (continue the conversation with the most recent activity), '
        '"reopen" (the one an interactive client last had open; "latest" when there is '
        'none), "new", or a conversation id.',
    )
    interactive: bool = Field(
        default=False,
        description="A person's interactive session (the TUI): the conversation it opens "
        'becomes the one "reopen" names. Headless runs (`cairn -p`) leave it false, so they '
        "never change what the TUI reopens.",
    )
    resume_after: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEQ,
        description="Replay durable events with a seq greater than this.",
    )
    client_name: str = "cairn"
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="This client instance's id, chosen by the client and sent again on every "
        "reconnect: a tool request names the one client that runs it by this id, so a client "
        "that reconnects keeps running the requests of the runs it started. Without it the "
        "server names the connection, and a reconnect is a new client.",
    )


UserCommand = Literal["init"]


class UserMessage(Frame):
    """A message typed by the user. `command` marks a slash command the server expands:
    "init" asks the agent to (re)learn the codebase and rewrite its `project` memory."""

    type: Literal["user_message"] = "user_message"
    text: str = Field(min_length=1)
    command: UserCommand | None = None
    notes: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(
        default_factory=list,
        max_length=20,
        description="What happened in the client since the last message that the model must "
        "know (e.g. /undo reverted files); each is stored as an event before the message.",
    )


ToolStatus = Literal["ok", "error", "denied"]
ApprovalDecision = Literal["allow", "deny"]
# "policy": a rule or the mode; "user": a person answered; "nobody": it needed a person and
# none could answer (headless, or the request was withdrawn).
DecidedBy = Literal["policy", "user", "nobody"]
ApprovalAnswer = Literal["once", "session", "always", "deny"]  # always: save the suggested rule
APPROVAL_SHOWN_LIMIT = 20_000  # characters of a preview kept in an approval record


class ApprovalRecord(Frame):
    """How the client decided on one tool call, for the run's audit trail.

    decided_by: "policy" (a rule or the mode), "user" (a person answered), or "nobody" (it
    needed a person and none could answer: headless, or the request was withdrawn).
    """

    decision: ApprovalDecision
    decided_by: DecidedBy
    answer: ApprovalAnswer | None = Field(
        default=None, description='The person\'s answer, when decided_by is "user".'
    )
    reason: str = Field(
        description="The verdict's reason as the user was shown it, secrets redacted."
    )
    shown_title: str = Field(
        description="The preview's title the user saw (or would have), secrets redacted."
    )
    shown: str = Field(
        max_length=APPROVAL_SHOWN_LIMIT,
        description="The preview's body as shown (the diff or command), secrets redacted, "
        "cut with a note past 20,000 characters.",
    )
    content_hash: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$",
        description='"sha256:<hex>" of the whole preview body, before redacting and cutting.',
    )
    asked_at: datetime | None = Field(
        default=None, description="When the approval screen was shown; null if nobody was asked."
    )
    decided_at: datetime


class ToolResult(Frame):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    status: ToolStatus
    content: str = ""
    reason: str | None = Field(
        default=None, description="Why the call was denied or failed, shown to the model."
    )
    approval: ApprovalRecord | None = Field(
        default=None, description="How the call was decided; stored with the run on the server."
    )


class Cancel(Frame):
    """Interrupt the running run (Esc in the TUI)."""

    type: Literal["cancel"] = "cancel"
    reason: str = "interrupted by the user"


class Ping(Frame):
    type: Literal["ping"] = "ping"
    nonce: str | None = None


class Compact(Frame):
    """Compact the conversation now (/compact in the TUI): summarise the older messages into
    the summary section. Refused while a run is in progress."""

    type: Literal["compact"] = "compact"
    instructions: str | None = Field(
        default=None, description="What the summary should keep above all (optional)."
    )


ClientFrame = Annotated[
    Hello | UserMessage | ToolResult | Cancel | Ping | Compact, Field(discriminator="type")
]


# --------------------------------------------------------------------------- server → client


class ServerEvent(Frame):
    """Every server event carries the conversation's seq.

    Durable events get a fresh seq and are replayed on resume. Transient events are never
    stored or replayed: `welcome` and `assistant_delta` carry the seq of the last durable
    event, `pong` and `error` carry 0.
    """

    seq: int = 0


class HistoryToolCall(BaseModel):
    """A tool call as the model made it; `call_id` is the model's own id for it."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: ToolStatus | None = None
    reason: str | None = None
    result: ResultPreview | None = Field(
        default=None,
        description="What a person is shown of the call's result (in a welcome's history; "
        "the model saw the whole result, secrets already redacted by the client).",
    )
    approval: ApprovalAnswer | None = Field(
        default=None,
        description='How a person allowed the call when asked ("once", "session", '
        '"always"); null when the policy decided or nobody was asked (history only).',
    )


ChatRole = Literal["user", "assistant", "tool"]  # who wrote a message the model sees


class HistoryItem(BaseModel):
    """One earlier message, as the client shows it when a conversation continues."""

    role: ChatRole
    text: str
    tool_calls: list[HistoryToolCall] = Field(default_factory=list)
    created_at: datetime | None = None


class Usage(BaseModel):
    """Tokens and cost; `input_tokens` includes the `cached_input_tokens` among them."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class ContextUse(BaseModel):
    """How full the context was: the prompt `tokens` of a model request (or what a compaction
    left), measured against the `budget` it was built within."""

    tokens: int = Field(ge=0)
    budget: int = Field(ge=0)


class Welcome(ServerEvent):
    type: Literal["welcome"] = "welcome"
    protocol_version: int = PROTOCOL_VERSION
    agent_id: str
    conversation_id: str
    model: str | None = Field(description="The agent's model, or None when none is configured.")
    model_problem: str | None = Field(
        default=None, description="Why no model can be used, with how to configure one."
    )
    model_not_offered: bool = Field(
        default=False,
        description="True when `model_problem` is that the model's provider does not have it "
        "(its list of models lacks it, or it refused the key): a model failure, not settings.",
    )
    history: list[HistoryItem] = Field(default_factory=list)
    running_run_id: str | None = None
    client_id: str = Field(
        description="The id this client is known by (hello's client_id, or one the server "
        "chose); a tool_request whose `executor` is this id is this client's to run."
    )
    pending_tool_requests: list[ToolRequest] = Field(
        default_factory=list,
        description="Tool requests still waiting for an answer; each is answered by the client "
        "its `executor` names (a client that resumes a run it did not start is named here).",
    )
    unknown_outcomes: list[str] = Field(
        default_factory=list,
        description="call_ids of client tool calls the server closed without knowing whether "
        "they ran (a restart, or an executor that never answered); a client holding the "
        "recorded result of one sends it as a tool_result, which the server then records.",
    )
    usage: Usage = Field(
        default_factory=Usage,
        description="Tokens and cost of the conversation's runs whose run_finished has a seq "
        "up to this welcome's; a client adds those of later run_finished events.",
    )
    context: ContextUse | None = Field(
        default=None,
        description="How full the context was after the conversation's last model request, or "
        "its last compaction (a context_compacted with a seq up to this welcome's) when that "
        "came later; null before the first. Later step_finished and context_compacted events "
        "replace it.",
    )

    def model_unusable(self) -> str | None:
        """Why no model can run for this agent; None when `model` is usable."""
        if self.model is not None and self.model_problem is None:
            return None
        return self.model_problem or "no model is configured"


class RunStarted(ServerEvent):
    type: Literal["run_started"] = "run_started"
    run_id: str
    user_text: str


class AssistantDelta(ServerEvent):
    type: Literal["assistant_delta"] = "assistant_delta"
    run_id: str
    text: str


class AssistantMessage(ServerEvent):
    type: Literal["assistant_message"] = "assistant_message"
    run_id: str
    text: str
    tool_calls: list[HistoryToolCall] = Field(default_factory=list)


# The request a helper with may_edit asks its client at its end: what changed in its worktree.
# Never offered to a model; the client answers it itself (no tool runs).
HELPER_WORKTREE_TOOL = "helper_worktree"


class HelperTag(BaseModel):
    """Whose request this is when a helper run (the `task` tool) made it: the label a person
    is shown, the helper's own conversation, and the branch whose worktree its file tools run
    in (a helper started with may_edit) or null (read-only: the checkout itself)."""

    label: str = Field(min_length=1, max_length=40, description='e.g. "helper 2".')
    conversation_id: str
    worktree_branch: str | None = Field(
        default=None,
        max_length=200,
        description="The git branch of the helper's own worktree, which its client makes "
        "beside the checkout (as `cairn ticket --worktree` does) at the first request; the "
        "request's paths are relative to that worktree.",
    )


class ToolRequest(ServerEvent):
    """A client tool call to run. Every attached client receives it; only the client named by
    `executor` runs it and answers, the others show it read-only."""

    type: Literal["tool_request"] = "tool_request"
    run_id: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    executor: str | None = Field(
        default=None,
        description="client_id of the one client that runs this request: the one whose "
        "message started the run, or the one that resumed it. A request sent again with "
        "another executor has been handed over; the earlier executor must not start it.",
    )
    model_call_id: str | None = Field(
        default=None,
        description="The model's own id of this call, as in the assistant_message that made "
        "it (whose calls a client may show before their requests come).",
    )
    approve_only: bool = Field(
        default=False,
        description="A call the server runs itself once its executor approves it (fetch_url): "
        "the executor decides through its policy (asking its person when the policy asks) and "
        'answers with a tool_result, status "ok" for approved (content ignored) or "denied" '
        "with the reason, and never runs it. The call's end comes as a tool_settled naming the "
        "model's call id.",
    )
    helper: HelperTag | None = Field(
        default=None,
        description="Set when a helper run of this conversation's run made the request: a "
        "client shows the label with it (approval, transcript, headless output) and runs it "
        "in the helper's worktree when one is named.",
    )


class ToolWithdrawn(ServerEvent):
    """The server stops waiting for a tool request (cancel, a new message, the approval
    timeout, shutdown). Its executor must not start it; if it is running, the executor stops
    it (a shell command is killed) and answers at once with what happened. The server records
    that answer if it comes within a short grace, else the outcome as unknown."""

    type: Literal["tool_withdrawn"] = "tool_withdrawn"
    run_id: str
    call_id: str
    reason: str


class ToolSettled(ServerEvent):
    """A tool request was settled: by its executor's answer, or by the server when no answer
    came (then `status` is "error" and `reason` says the outcome is unknown and why). A late
    answer to a call of unknown outcome settles it again with what really happened."""

    type: Literal["tool_settled"] = "tool_settled"
    run_id: str
    call_id: str
    status: ToolStatus
    reason: str | None = None
    # A call the server ran itself (memory, search) or refused without sending it (malformed
    # arguments, an unknown tool): its result as a person sees it; call_id is the model's.
    result: ResultPreview | None = None


class ModelRetry(ServerEvent):
    """The model call failed in a way worth retrying; the next attempt starts after
    `delay_s`. With `discarded_output`, the text streamed so far in this step is void."""

    type: Literal["model_retry"] = "model_retry"
    run_id: str
    attempt: int
    delay_s: float
    reason: str
    discarded_output: bool = False


class StepFinished(ServerEvent):
    """One model call of a run is done: its usage, and how full the context was."""

    type: Literal["step_finished"] = "step_finished"
    run_id: str
    step: int
    usage: Usage = Field(default_factory=Usage)
    context_tokens: int = Field(description="Prompt tokens counted before sending.")
    context_budget: int


CompactionTrigger = Literal["threshold", "overflow", "requested"]
CompactionMethod = Literal["summary", "trim"]


class ContextCompacted(ServerEvent):
    """Older messages left the context for the summary section (they stay searchable with
    conversation_search). `method` "trim" is the deterministic fallback when summarising
    failed or was not possible; `detail` says why. `secrets_redacted`: secrets cut from the
    summary before it was stored."""

    type: Literal["context_compacted"] = "context_compacted"
    run_id: str | None = None
    trigger: CompactionTrigger
    method: CompactionMethod
    messages_compacted: int
    tokens_before: int
    tokens_after: int
    context_budget: int
    detail: str | None = None
    secrets_redacted: int = 0


StopReason = Literal[
    "end_turn",
    "cancelled",
    "step_limit",
    "token_limit",
    "cost_limit",
    "loop_detected",
    "truncated",
    "model_error",
    "superseded",
    "server_restart",
]


class RunFinished(ServerEvent):
    type: Literal["run_finished"] = "run_finished"
    run_id: str
    stop_reason: StopReason
    usage: Usage = Field(default_factory=Usage)
    steps: int = 0
    detail: str | None = None


ErrorCode = Literal[
    "malformed_frame",
    "unknown_frame",
    "bad_version",
    "unauthorized",
    "not_ready",
    "unknown_call",
    "not_executor",
    "run_in_progress",
    "nothing_to_compact",
    "no_model",
    "internal",
]


class ErrorEvent(ServerEvent):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str


class Pong(ServerEvent):
    type: Literal["pong"] = "pong"
    nonce: str | None = None


Welcome.model_rebuild()

ServerFrame = Annotated[
    Welcome
    | RunStarted
    | AssistantDelta
    | AssistantMessage
    | ToolRequest
    | ToolWithdrawn
    | ToolSettled
    | ModelRetry
    | StepFinished
    | ContextCompacted
    | RunFinished
    | ErrorEvent
    | Pong,
    Field(discriminator="type"),
]

TRANSIENT_EVENT_TYPES = frozenset(
    {"assistant_delta", "model_retry", "step_finished", "pong", "error", "welcome"}
)

CLIENT_FRAME_TYPES = ("hello", "user_message", "tool_result", "cancel", "ping", "compact")
SERVER_FRAME_TYPES = (
    "welcome",
    "run_started",
    "assistant_delta",
    "assistant_message",
    "tool_request",
    "tool_withdrawn",
    "tool_settled",
    "model_retry",
    "step_finished",
    "context_compacted",
    "run_finished",
    "error",
    "pong",
)

_client_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
_server_adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)


class FrameError(ValueError):
    """A frame that cannot be understood; `code` is the error code to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


def parse_client_frame(raw: str | bytes) -> ClientFrame:
    """Parse one client frame, raising FrameError with a code a client can act on."""
    frame: ClientFrame = _parse(_client_adapter, raw, CLIENT_FRAME_TYPES)
    return frame


def parse_server_frame(raw: str | bytes) -> ServerFrame:
    frame: ServerFrame = _parse(_server_adapter, raw, SERVER_FRAME_TYPES)
    return frame


def _parse(adapter: TypeAdapter[Any], raw: str | bytes, known: tuple[str, ...]) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise FrameError(
                "malformed_frame", f"frame is not valid JSON: {first['msg']}"
            ) from None
        if first["type"] == "union_tag_invalid":
            tag = first.get("ctx", {}).get("tag", "?")
            raise FrameError(
                "unknown_frame", f"unknown frame type {tag!r}; expected one of {', '.join(known)}"
            ) from None
        if not first["loc"]:
            raise FrameError(
                "malformed_frame", "frame must be a JSON object with a 'type' field"
            ) from None
        problems = validation_problems(exc, skip=1, whole="(frame)")
        raise FrameError(
            "malformed_frame", f"invalid {first['loc'][0]} frame: {problems}"
        ) from None


def dump_frame(frame: Frame) -> str:
    return frame.model_dump_json()
