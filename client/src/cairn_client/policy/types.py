"""Decisions of the policy and answers of the person at the keyboard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Decision = Literal["allow", "ask", "deny"]
ApproveMode = Literal["none", "edits", "all"]


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str  # why, shown to the user and, for a denial, to the model


@dataclass(frozen=True)
class Approval:
    """The user's answer on the approval screen."""

    kind: Literal["once", "session", "deny"]
    reason: str | None = None  # for "deny": the user's words, passed to the model
