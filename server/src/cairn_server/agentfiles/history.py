"""An agent file's messages in Cairn's history form, so every request built from them keeps
the providers' rules.

Owns the conversion: Letta's content parts and JSON envelopes to plain text, `send_message`
calls to the reply they carried, tool calls paired with their results (a call with no result
is closed with an honest one; a result with no call is left out), ids the providers accept,
secrets cut. It also writes Cairn's history back in the file's form (`file_messages`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cairn_protocol.redaction import redact
from cairn_protocol.rest import ImportItem, ImportOutcome, MessageRole

from cairn_server.agentfiles.schema import FileMessage, FileToolCall

# Letta's old agents speak to the user through this tool; its argument is the reply.
SEND_MESSAGE = "send_message"
# User messages MemGPT wrapped in JSON: the user's own words, and notices from the system.
USER_ENVELOPE = "user_message"
NOTICE_ENVELOPES = ("system_alert", "heartbeat", "login")
UNANSWERED = (
    "No result for this call was recorded in the agent file it was imported from; "
    "whether it ran is unknown."
)
CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what every provider accepts as a call id
TEXT_PARTS = ("text",)
THOUGHT_PARTS = ("reasoning", "omitted_reasoning", "redacted_reasoning")


@dataclass(frozen=True)
class HistoryMessage:
    """One message as Cairn stores it (a `messages` row without its conversation)."""

    role: MessageRole
    content: str = ""
    tool_calls: tuple[dict[str, str], ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    created_at: datetime | None = None


@dataclass
class _Tally:
    """What happened to the file's messages, for the report."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n


# What each tally becomes in the report: (outcome, name, reason).
_ROWS: dict[str, tuple[ImportOutcome, str, str]] = {
    "kept": ("kept", "messages", "user, assistant and tool messages, searchable by recall"),
    "unwrapped": (
        "converted",
        "MemGPT user envelopes",
        'JSON {"type": "user_message"} unwrapped to the user\'s words',
    ),
    "notices": (
        "converted",
        "system notices",
        "system alerts, heartbeats and logins kept as Cairn's event notes",
    ),
    "replies": ("converted", "send_message calls", "the reply they carried became the answer"),
    "closed": (
        "converted",
        "unanswered tool calls",
        "closed with a result saying none was recorded (no call reaches a model unanswered)",
    ),
    "renamed": (
        "converted",
        "tool call ids",
        "renamed: duplicate, or not what providers accept",
    ),
    "secrets": ("converted", "secrets in messages", "cut to [REDACTED:kind] before storing"),
    "system": (
        "left_out",
        "system messages",
        "the compiled system prompt; the file's `system` field is imported instead",
    ),
    "thoughts": (
        "left_out",
        "reasoning",
        "hidden reasoning and inner thoughts are not replayed to models",
    ),
    "send_results": ("left_out", "send_message results", "the reply itself is kept"),
    "orphans": ("left_out", "tool results", "no call before them to answer"),
    "approvals": ("left_out", "approval messages", "Letta's approval records; Cairn's are its own"),
    "other_parts": ("left_out", "images and other content", "only text is imported"),
    "unknown_roles": ("left_out", "messages of unknown roles", "not a role Cairn knows"),
}


@dataclass
class _Converter:
    """Walks the file's messages in order, keeping the calls still waiting for results."""

    tally: _Tally = field(default_factory=_Tally)
    out: list[HistoryMessage] = field(default_factory=list)
    open_calls: dict[str, str] = field(default_factory=dict)  # file id -> stored id
    dropped_calls: set[str] = field(default_factory=set)
    used_ids: set[str] = field(default_factory=set)
    seen_speaker: bool = False

    def convert(self, message: FileMessage) -> None:
        role = message.role
        if role == "system":
            self._system(message)
        elif role == "user":
            self._user(message)
        elif role == "assistant":
            self._assistant(message)
        elif role in ("tool", "function"):  # "function": the older OpenAI name
            self._tool(message)
        elif role == "approval":
            self.tally.add("approvals")
        else:
            self.tally.add("unknown_roles")

    def finish(self) -> list[HistoryMessage]:
        self._close_open(None)
        return self.out

    def _system(self, message: FileMessage) -> None:
        if not self.seen_speaker:  # the system prompt Letta keeps as the first message
            self.tally.add("system")
            return
        self._emit("event", self._text(message), message.created_at, "notices")

    def _user(self, message: FileMessage) -> None:
        text = self._text(message)
        envelope = _envelope(text)
        if envelope is None:
            self._emit("user", text, message.created_at, "kept")
        elif envelope[0] == USER_ENVELOPE:
            self._emit("user", envelope[1], message.created_at, "unwrapped")
        else:
            self._emit("event", envelope[1], message.created_at, "notices")

    def _assistant(self, message: FileMessage) -> None:
        text = self._text(message)
        calls = list(message.tool_calls or []) + _content_calls(message)
        replies = [_reply(call) for call in calls if call.function.name == SEND_MESSAGE]
        kept_calls = [call for call in calls if call.function.name != SEND_MESSAGE]
        self.dropped_calls.update(c.id for c in calls if c.function.name == SEND_MESSAGE)
        if replies:  # the text beside a send_message is MemGPT's inner monologue
            if text:
                self.tally.add("thoughts")
            text = "\n\n".join(reply for reply in replies if reply)
            self.tally.add("replies")
        if not text and not kept_calls:
            return
        stored = tuple(self._call(call) for call in kept_calls)
        self._emit("assistant", text, message.created_at, None if replies else "kept", stored)
        self.open_calls = {
            call.id: made["id"] for call, made in zip(kept_calls, stored, strict=True)
        }

    def _tool(self, message: FileMessage) -> None:
        results = _results(message, self._text(message))
        for call_id, content, is_error in results:
            if call_id in self.dropped_calls:
                self.tally.add("send_results")
                continue
            stored_id = self.open_calls.pop(call_id or "", None)
            if stored_id is None:
                self.tally.add("orphans")
                continue
            text, cut = redact(content)
            self.tally.add("secrets", cut)
            self.out.append(
                HistoryMessage("tool", text, (), stored_id, is_error, message.created_at)
            )
            self.tally.add("kept")

    def _emit(
        self,
        role: MessageRole,
        text: str,
        created_at: datetime | None,
        tally: str | None,
        calls: tuple[dict[str, str], ...] = (),
    ) -> None:
        self._close_open(created_at)
        self.seen_speaker = True
        text, cut = redact(text)
        self.tally.add("secrets", cut)
        if tally is not None:
            self.tally.add(tally)
        self.out.append(HistoryMessage(role, text, calls, None, False, created_at))

    def _close_open(self, created_at: datetime | None) -> None:
        """Answer the calls still open before anything else is said (providers require it)."""
        for stored_id in self.open_calls.values():
            self.out.append(HistoryMessage("tool", UNANSWERED, (), stored_id, True, created_at))
            self.tally.add("closed")
        self.open_calls.clear()

    def _call(self, call: FileToolCall) -> dict[str, str]:
        stored_id = call.id
        if not CALL_ID.match(stored_id) or stored_id in self.used_ids:
            stored_id = f"call_imported_{len(self.used_ids) + 1}"
            self.tally.add("renamed")
        self.used_ids.add(stored_id)
        arguments = call.function.arguments
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        text, cut = redact(text)
        self.tally.add("secrets", cut)
        return {"id": stored_id, "name": call.function.name, "arguments": text}

    def _text(self, message: FileMessage) -> str:
        content = message.content
        if content is None or isinstance(content, str):
            return content or ""
        texts = []
        for part in content:
            kind = part.get("type")
            if kind in TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in THOUGHT_PARTS:
                self.tally.add("thoughts")
            elif kind not in ("tool_call", "tool_return"):  # those are read as calls/results
                self.tally.add("other_parts")
        return "\n".join(texts)


def convert_history(messages: list[FileMessage]) -> tuple[list[HistoryMessage], list[ImportItem]]:
    """The messages as Cairn stores them, and the report's rows about them."""
    converter = _Converter()
    for message in messages:
        converter.convert(message)
    history = converter.finish()
    items = [
        ImportItem(kind="messages", name=name, outcome=outcome, count=n, reason=reason)
        for key, (outcome, name, reason) in _ROWS.items()
        if (n := converter.tally.counts[key])
    ]
    return history, items


def _envelope(text: str) -> tuple[str, str] | None:
    """(type, message) of a MemGPT JSON envelope, or None for plain text."""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("type") not in (USER_ENVELOPE, *NOTICE_ENVELOPES):
        return None
    message = value.get("message")
    return str(value["type"]), message if isinstance(message, str) else text


def _reply(call: FileToolCall) -> str:
    arguments = call.function.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return arguments
    message = arguments.get("message") if isinstance(arguments, dict) else None
    return message if isinstance(message, str) else ""


def _content_calls(message: FileMessage) -> list[FileToolCall]:
    """Tool calls written as content parts (Letta v1: {"type": "tool_call", id, name, input})."""
    calls = []
    for part in message.content if isinstance(message.content, list) else []:
        if part.get("type") == "tool_call" and part.get("id") and part.get("name"):
            arguments = part.get("input") or part.get("arguments") or {}
            calls.append(
                FileToolCall.model_validate(
                    {"id": part["id"], "function": {"name": part["name"], "arguments": arguments}}
                )
            )
    return calls


def _results(message: FileMessage, text: str) -> list[tuple[str | None, str, bool]]:
    """(call id, content, is_error) of each result a tool message carries: its own call's,
    then any other `tool_returns` (parallel calls), then `tool_return` content parts."""
    returns = {ret.tool_call_id: ret for ret in message.tool_returns or [] if ret.tool_call_id}
    results: list[tuple[str | None, str, bool]] = []
    if message.tool_call_id:
        own = returns.pop(message.tool_call_id, None)
        content = text or (own.func_response if own is not None else None) or ""
        results.append((message.tool_call_id, content, own is not None and own.status == "error"))
    results += [(i, ret.func_response or "", ret.status == "error") for i, ret in returns.items()]
    for part in message.content if isinstance(message.content, list) else []:
        if part.get("type") == "tool_return":
            value = part.get("content")
            shown = value if isinstance(value, str) else json.dumps(value)
            results.append((part.get("tool_call_id"), shown, part.get("is_error") is True))
    return results


def file_messages(
    history: list[HistoryMessage], system: str, agent_id: str
) -> list[dict[str, Any]]:
    """Cairn's history in the file's form, after a first system message holding `system`."""
    rows: list[dict[str, Any]] = [_file_message(0, "system", system, agent_id)]
    names: dict[str, str] = {}
    for message in history:
        index = len(rows)
        if message.role == "event":
            envelope = json.dumps({"type": "system_alert", "message": message.content})
            rows.append(_file_message(index, "user", envelope, agent_id, message.created_at))
            continue
        row = _file_message(index, message.role, message.content, agent_id, message.created_at)
        if message.tool_calls:
            names.update({call["id"]: call["name"] for call in message.tool_calls})
            row["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in message.tool_calls
            ]
        if message.role == "tool":
            row["tool_call_id"] = message.tool_call_id
            row["name"] = names.get(message.tool_call_id or "")
            row["tool_returns"] = [
                {
                    "tool_call_id": message.tool_call_id,
                    "status": "error" if message.is_error else "success",
                    "func_response": message.content,
                }
            ]
        rows.append(row)
    return rows


def _file_message(
    index: int, role: str, text: str, agent_id: str, created_at: datetime | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "type": "message",
        "id": f"message-{index}",
        "role": role,
        "content": [{"type": "text", "text": text}] if text else [],
        "agent_id": agent_id,
        "tool_calls": None,
        "tool_call_id": None,
        "tool_returns": [],
    }
    if created_at is not None:
        row["created_at"] = created_at.isoformat()
    return row
