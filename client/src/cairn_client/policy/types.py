"""Decisions of the policy, its modes, and answers of the person at the keyboard.

Owns the mode names, what each mode does by default per kind of call, and the legacy
`--approve none|edits|all` values mapped onto them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from cairn_protocol.messages import ApprovalAnswer

Decision = Literal["allow", "ask", "deny"]
# default: reads run, edits and shell ask; accept-edits: edits run too; plan: read-only;
# strict: everything asks; bypass: everything runs (only `--approve all` or the user's file).
Mode = Literal["default", "accept-edits", "plan", "strict", "bypass"]
ApproveMode = Literal["none", "edits", "all"]  # the older names, still accepted
# mcp: a tool of one of the client's MCP servers (it may do anything its server can); web: a
# page the server fetches once approved (fetch_url: its URL leaves for that host).
CallKind = Literal["read", "edit", "shell", "mcp", "web"]

MODES: tuple[Mode, ...] = get_args(Mode)
MODE_FOR_APPROVE: dict[ApproveMode, Mode] = {
    "none": "default",
    "edits": "accept-edits",
    "all": "bypass",
}
# What each mode does when no rule decides, per kind of call.
# A web fetch asks in every mode but bypass (plan mode too: reading docs helps a plan).
MODE_DEFAULTS: dict[Mode, dict[CallKind, Decision]] = {
    "default": {"read": "allow", "edit": "ask", "shell": "ask", "mcp": "ask", "web": "ask"},
    "accept-edits": {"read": "allow", "edit": "allow", "shell": "ask", "mcp": "ask", "web": "ask"},
    "plan": {"read": "allow", "edit": "deny", "shell": "deny", "mcp": "deny", "web": "ask"},
    "strict": {"read": "ask", "edit": "ask", "shell": "ask", "mcp": "ask", "web": "ask"},
    "bypass": {"read": "allow", "edit": "allow", "shell": "allow", "mcp": "allow", "web": "allow"},
}
_LEVEL: dict[Decision, int] = {"deny": 0, "ask": 1, "allow": 2}


def as_mode(value: str) -> Mode | None:
    """A mode from its name or an older approve value; None for anything else."""
    for mode in MODES:
        if value == mode:
            return mode
    for approve, mode in MODE_FOR_APPROVE.items():
        if value == approve:
            return mode
    return None


def stricter(one: Decision, other: Decision) -> Decision:
    """Whichever of two decisions runs less unasked."""
    return one if _LEVEL[one] <= _LEVEL[other] else other


def narrows(mode: Mode, than: Mode) -> bool:
    """Whether `mode` runs nothing unasked that `than` would ask about or refuse."""
    return all(
        _LEVEL[MODE_DEFAULTS[mode][kind]] <= _LEVEL[MODE_DEFAULTS[than][kind]]
        for kind in get_args(CallKind)
    )


@dataclass(frozen=True)
class AnswerOptions:
    """What the person asked may answer besides "once" and "deny", as the policy decided:
    what "allow for this session" would cover, and the rule "allow always" would save."""

    session: str | None = None  # e.g. "edits", "this command"; None: only once
    rule: str | None = None  # the narrowest rule that really stops the asking
    no_rule_reason: str = "no allow rule can cover this call; it will keep asking"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str  # why, shown to the user and, for a denial, to the model
    options: AnswerOptions = AnswerOptions()  # for "ask": the answers the person has


@dataclass(frozen=True)
class Approval:
    """The user's answer on the approval screen."""

    kind: ApprovalAnswer  # always: save the suggested rule
    reason: str | None = None  # for "deny": the user's words, passed to the model
    by_person: bool = True  # False: nobody could be asked (headless), so it is a denial
