"""The local policy: whether a prepared tool call runs, asks the user, or is refused.

Owns the decision order (deny → ask → allow), the default denial of secret files,
and the allowances the user grants for the rest of a session.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

from cairn_protocol.tools import (
    CLIENT_TOOLS,
    EditArgs,
    GlobArgs,
    GrepArgs,
    ReadArgs,
    ShellArgs,
    WriteArgs,
)

from cairn_client.policy.settings import PolicySettings, Rule
from cairn_client.policy.types import ApproveMode, Verdict
from cairn_client.tools.base import PreparedCall

SECRET_FILE_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_ed25519*",
    ".netrc",
    "credentials*",
)
EDIT_TOOLS = frozenset(name for name, tool in CLIENT_TOOLS.items() if tool.edits_files)
READ_TOOLS = frozenset({"read", "grep", "glob"})
# An allow rule for shell never covers a command that chains, pipes, substitutes or
# redirects: `shell(npm test*)` must not allow `npm test && rm -rf ~`.
_SHELL_COMPOUND = re.compile(r"[;&|<>`\n]|\$\(")
_SHELL_SEPARATORS = re.compile(r"&&|\|\||[;&|\n]")


def is_secret_path(path: str) -> bool:
    """Whether a workspace-relative path names a file that may hold secrets."""
    name = PurePosixPath(path).name
    return any(fnmatchcase(name, pattern) for pattern in SECRET_FILE_PATTERNS)


class Policy:
    """Decides on prepared calls from local settings and this session's allowances only.

    Nothing the server sends can widen it: it sees the request itself, nothing else.
    """

    def __init__(
        self, settings: PolicySettings, approve_override: ApproveMode | None = None
    ) -> None:
        self.settings = settings
        self.approve: ApproveMode = approve_override or settings.approve
        self._allow_rules = settings.allow_rules()
        self._deny_rules = settings.deny_rules()
        self._edits_allowed_for_session = False
        self._commands_allowed_for_session: set[str] = set()

    def decide(self, prepared: PreparedCall) -> Verdict:
        subjects = _subjects(prepared)
        for rule in self._deny_rules:
            if _denies(rule, prepared.tool, subjects):
                return Verdict("deny", f"denied by rule {rule.text} in {rule.source}")
        secret = _secret_subject(prepared, subjects)
        if secret is not None:
            return Verdict(
                "deny", f"{secret} may hold secrets; reading or changing it is denied by default"
            )
        if prepared.error is not None:
            return Verdict("allow", "nothing will run: the request is invalid")
        if prepared.tool in READ_TOOLS:
            return Verdict("allow", "reading is allowed")
        if prepared.tool in EDIT_TOOLS:
            return self._decide_edit(prepared, subjects)
        return self._decide_shell(prepared, subjects)

    def allow_for_session(self, prepared: PreparedCall) -> None:
        """Remember "allow for session": every edit tool, or this exact shell command."""
        if prepared.tool in EDIT_TOOLS:
            self._edits_allowed_for_session = True
        elif isinstance(prepared.args, ShellArgs):
            self._commands_allowed_for_session.add(prepared.args.command)

    def _decide_edit(self, prepared: PreparedCall, subjects: list[str]) -> Verdict:
        if self.approve in ("edits", "all"):
            mode = self.approve
            return Verdict("allow", f"edits are approved automatically (approve mode: {mode})")
        rule = self._allowing_rule(prepared.tool, subjects)
        if rule is not None:
            return Verdict("allow", f"allowed by rule {rule.text} in {rule.source}")
        if self._edits_allowed_for_session:
            return Verdict("allow", "edits were allowed for this session")
        return Verdict("ask", "edits need approval")

    def _decide_shell(self, prepared: PreparedCall, subjects: list[str]) -> Verdict:
        if self.approve == "all":
            return Verdict("allow", "every call is approved automatically (approve mode: all)")
        rule = self._allowing_rule(prepared.tool, subjects)
        if rule is not None:
            return Verdict("allow", f"allowed by rule {rule.text} in {rule.source}")
        if subjects and subjects[0] in self._commands_allowed_for_session:
            return Verdict("allow", "this command was allowed for this session")
        return Verdict("ask", "shell commands need approval")

    def _allowing_rule(self, tool: str, subjects: list[str]) -> Rule | None:
        for rule in self._allow_rules:
            if _allows(rule, tool, subjects):
                return rule
        return None


def _subjects(prepared: PreparedCall) -> list[str]:
    """What rules match against: the command of a shell call, else the paths it touches."""
    args = prepared.args
    if isinstance(args, ShellArgs):
        return [args.command]
    if prepared.changes:
        return [change.path for change in prepared.changes]
    if isinstance(args, (GrepArgs, GlobArgs)):
        return [args.path or "."]
    if isinstance(args, (ReadArgs, EditArgs, WriteArgs)):
        return [args.path]
    return []


def _secret_subject(prepared: PreparedCall, subjects: list[str]) -> str | None:
    """The first secret file a read, edit, or a grep of one file would touch."""
    if prepared.tool in ("glob", "shell"):
        return None
    if isinstance(prepared.args, GrepArgs) and prepared.args.path is None:
        return None  # a whole-tree grep skips secret files itself
    for path in subjects:
        if is_secret_path(path):
            return path
    return None


def _denies(rule: Rule, tool: str, subjects: list[str]) -> bool:
    if rule.tool != tool:
        return False
    if rule.pattern is None:
        return True
    candidates = list(subjects)
    if tool == "shell":  # `shell(rm *)` also denies `make && rm -rf build`
        candidates += [part.strip() for s in subjects for part in _SHELL_SEPARATORS.split(s)]
    return any(fnmatchcase(candidate, rule.pattern) for candidate in candidates if candidate)


def _allows(rule: Rule, tool: str, subjects: list[str]) -> bool:
    if rule.tool != tool:
        return False
    if rule.pattern is None:
        return True
    if not subjects:
        return False
    if tool == "shell" and _SHELL_COMPOUND.search(subjects[0]):
        return False
    return all(fnmatchcase(subject, rule.pattern) for subject in subjects)
