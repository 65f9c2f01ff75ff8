"""The local policy: whether a prepared tool call runs, asks the user, or is refused.

Owns the decision order (deny → secrets → mode refusal → unsandboxed shell → ask → protected →
allow → session → mode default), rule matching, session allowances, and the answers a person
asked may give (the narrowest rule that really stops the asking, or why none can).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import pathspec
from cairn_protocol.mcp import is_mcp_tool
from cairn_protocol.tools import (
    CLIENT_TOOLS,
    FETCH_URL,
    EditArgs,
    GlobArgs,
    GrepArgs,
    ReadArgs,
    ShellArgs,
    WriteArgs,
)

from cairn_client.policy.settings import (
    DOMAIN_PREFIX,
    MCP_RULE_TOOL,
    TOOL_GROUPS,
    PolicySettings,
    Rule,
    RuleKind,
    parse_rule,
    save_allow_rule,
)
from cairn_client.policy.types import (
    MODE_DEFAULTS,
    AnswerOptions,
    ApproveMode,
    CallKind,
    Mode,
    Verdict,
    as_mode,
    stricter,
)
from cairn_client.secrets import is_allowed, is_secret_name
from cairn_client.tools.base import PathFilter, PreparedCall
from cairn_client.tools.sandbox import Sandbox
from cairn_client.tools.shell_parse import parse_shell, unwrapped_commands

EDIT_TOOLS = TOOL_GROUPS["edit"]
READ_TOOLS = TOOL_GROUPS["read"]
PLAN_REFUSAL = (
    "plan mode is read-only: propose the change (or the command) instead of making it; "
    "the user can leave plan mode to apply it"
)
# Folders whose files steer git or Cairn itself: writing there always asks.
PROTECTED_DIRS = (".git", ".cairn")
# An allow rule for shell never covers a command that chains, pipes, substitutes or
# redirects: `shell(npm test:*)` must not allow `npm test && rm -rf ~`.
_SHELL_COMPOUND = re.compile(r"[;&|<>`\n]|\$\(")
# A deny or ask rule also looks at each piece of a compound command.
_SHELL_PIECES = re.compile(r"&&|\|\||\$\(|[;&|\n()`]")
_GLOB_CHARS = re.compile(r"[*?\[]")
# Commands whose arguments are a program of their own: suggest the exact command, no prefix.
_RUNS_ANYTHING = frozenset(
    {"bash", "sh", "zsh", "env", "sudo", "xargs", "eval", "exec", "python", "python3", "node"}
    | {"perl", "ruby", "npx", "uvx", "find", "ssh", "docker", "nohup", "timeout", "nice"}
)
_SUGGESTED_WORDS = 3


def call_kind(tool: str) -> CallKind:
    if is_mcp_tool(tool):
        return "mcp"
    if tool == FETCH_URL:
        return "web"
    if tool in READ_TOOLS:
        return "read"
    return "edit" if tool in EDIT_TOOLS else "shell"


class Policy:
    """Decides on prepared calls from local settings and this session's allowances only.

    Nothing the server sends can widen it: it sees the request itself, nothing else. Only the
    person at the keyboard changes the mode (`set_mode`) or allows things for the session.
    """

    def __init__(
        self,
        settings: PolicySettings,
        approve_override: ApproveMode | Mode | None = None,
        *,
        sandbox: Sandbox,
    ) -> None:
        self.settings = settings
        # Without a sandbox that starts, every shell command asks.
        self.sandbox = sandbox
        override = as_mode(approve_override) if approve_override else None
        self.mode: Mode = override or settings.mode
        self.configured_mode: Mode = self.mode  # what the settings or flags chose
        self._rules: dict[RuleKind, list[Rule]] = {
            kind: settings.rules(kind) for kind in ("deny", "ask", "allow")
        }
        self._kinds_allowed_for_session: set[CallKind] = set()
        self._commands_allowed_for_session: set[str] = set()
        self._mcp_allowed_for_session: set[str] = set()  # "server:tool"
        self._hosts_allowed_for_session: set[str] = set()  # fetch_url's hosts

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode

    def startup_notes(self) -> list[str]:
        """What the person must know once, at start: settings not applied, no sandbox."""
        notes = [f"Settings: {note}" for note in self.settings.ignored]
        if not self.sandbox.active:
            notes.append(
                f"Sandbox: {self.sandbox.problem}; shell commands run without it, so every "
                "one asks first"
            )
        return notes

    def decide(self, prepared: PreparedCall) -> Verdict:
        """The verdict, and for "ask" the answers the person has (decided here, once)."""
        verdict = self._verdict(prepared)
        if verdict.decision != "ask":
            return verdict
        return dataclasses.replace(verdict, options=self._options(prepared))

    def network_allowed(self, prepared: PreparedCall) -> bool:
        """Whether a shell command may use the network inside the sandbox."""
        if not isinstance(prepared.args, ShellArgs):
            return False
        if self.settings.sandbox.network:
            return True
        command = prepared.args.command.strip()
        return not _is_compound(command) and any(
            shell_matches(_shell_pattern(text), command)
            for text in self.settings.sandbox.network_commands
        )

    def _verdict(self, prepared: PreparedCall) -> Verdict:
        subjects = _subjects(prepared)
        kind = call_kind(prepared.tool)
        tool = _rule_tool(prepared)
        rule = self._matching("deny", tool, subjects) or self._path_rule("deny", prepared)
        if rule is not None:
            return Verdict("deny", f"denied by rule {rule.text} in {rule.source}")
        secret = self._secret_subject(prepared)
        if secret is not None:
            return Verdict(
                "deny", f"{secret} may hold secrets; reading or changing it is denied by default"
            )
        if prepared.error is not None:
            return Verdict("allow", "nothing will run: the request is invalid")
        default = MODE_DEFAULTS[self.mode][kind]
        if self.mode == "plan":  # planning never runs more unasked than the configured mode
            default = stricter(default, MODE_DEFAULTS[self.configured_mode][kind])
        if default == "deny":
            return Verdict("deny", PLAN_REFUSAL)
        unsandboxed = self.unsandboxed_reason(prepared)
        if unsandboxed is not None:  # no mode, rule or allowance runs it unasked
            return Verdict("ask", unsandboxed)
        return self._decide_by_rules(prepared, kind, subjects, default == "allow")

    def unsandboxed_reason(self, prepared: PreparedCall) -> str | None:
        """Why a shell call would run outside the sandbox (so it asks every time), or None."""
        if not isinstance(prepared.args, ShellArgs):
            return None
        if prepared.args.outside_sandbox:
            return "it runs outside the sandbox, which asks every time"
        if not self.sandbox.active:
            return f"no sandbox can start ({self.sandbox.problem}), so every shell command asks"
        return None

    def _decide_by_rules(
        self, prepared: PreparedCall, kind: CallKind, subjects: list[str], mode_allows: bool
    ) -> Verdict:
        tool = _rule_tool(prepared)
        rule = self._matching("ask", tool, subjects) or self._path_rule("ask", prepared)
        if rule is not None:
            return Verdict("ask", f"rule {rule.text} in {rule.source} asks first")
        protected = self.protected_subject(prepared)
        if protected is not None:
            return Verdict("ask", f"writing {protected} always asks (it steers git or cairn)")
        rule = self._matching("allow", tool, subjects)
        if rule is not None:
            return Verdict("allow", f"allowed by rule {rule.text} in {rule.source}")
        if kind in self._kinds_allowed_for_session:
            return Verdict("allow", f"{_KIND_WORDS[kind]} were allowed for this session")
        if kind == "mcp" and subjects and subjects[0] in self._mcp_allowed_for_session:
            return Verdict("allow", "this MCP tool was allowed for this session")
        if kind == "web" and subjects and subjects[0] in self._hosts_allowed_for_session:
            return Verdict("allow", f"fetching from {subjects[0]} was allowed for this session")
        if kind == "shell" and subjects and subjects[0] in self._commands_allowed_for_session:
            return Verdict("allow", "this command was allowed for this session")
        if kind == "shell" and self.mode != "strict" and _read_only_shell(prepared):
            return Verdict("allow", "a read-only command that touches no secret file")
        if mode_allows:
            if kind == "read":
                return Verdict("allow", "reading is allowed")
            return Verdict(
                "allow", f"{_KIND_WORDS[kind]} are approved automatically (mode: {self.mode})"
            )
        if kind == "read":
            return Verdict("ask", f"reads need approval (mode: {self.mode})")
        return Verdict("ask", f"{_KIND_WORDS[kind]} need approval")

    def denies_reading(self, path: str) -> bool:
        """Whether `decide` would refuse a read of `path` (workspace-relative) by a deny rule
        or its secret name (a secret the user allowed in the settings is readable): what the
        files offered to the person (`@` completion) leave out, judged without opening them."""
        if self._matching("deny", "read", [path]) is not None:
            return True
        return is_secret_name(path) and not is_allowed(path, self.settings.allow_secret_files)

    def withheld_patterns(self) -> tuple[str, ...]:
        """The path patterns of deny and ask rules on reading: the sandbox hides their files
        from shell commands, so `rg x` over the workspace never reads what `read` would not."""
        return tuple(
            rule.pattern
            for kind in ("deny", "ask")
            for rule in self._rules[kind]
            if rule.pattern is not None and rule.tools & READ_TOOLS
        )

    def search_filter(self, tool: str) -> PathFilter | None:
        """For grep and glob over a folder: whether a file found inside it is covered by a
        deny or ask rule on path, so a wide search never shows what reading it would not.
        None when no such rule exists (nothing to filter)."""
        if tool not in ("grep", "glob"):
            return None
        specs = [
            _gitignore_spec(rule.pattern)
            for kind in ("deny", "ask")
            for rule in self._rules[kind]
            if tool in rule.tools and rule.pattern is not None
        ]
        if not specs:
            return None

        @lru_cache(maxsize=4096)
        def withheld(path: str) -> bool:
            return any(spec.match_file(path) for spec in specs)

        return withheld

    def allow_for_session(self, prepared: PreparedCall) -> str | None:
        """Remember "allow for session": edits (or reads) of any unprotected file, or this
        exact shell command. Returns what was allowed, or None when only this once is possible.
        """
        scope = self._session_scope(prepared)
        if scope is None:
            return None
        if isinstance(prepared.args, ShellArgs):
            self._commands_allowed_for_session.add(prepared.args.command)
        elif prepared.mcp is not None:
            self._mcp_allowed_for_session.add(prepared.mcp.subject)
        elif prepared.web is not None:
            self._hosts_allowed_for_session.add(prepared.web.host)
        else:
            self._kinds_allowed_for_session.add(call_kind(prepared.tool))
        return scope

    def allow_always(self, prepared: PreparedCall) -> str | None:
        """Allow always: save the rule the options offered to the user's settings and apply
        it now. Returns the rule, or None when no rule can stop the asking or there is no
        settings file to write; SettingsError when writing fails."""
        rule = self._options(prepared).rule
        target = self.settings.user_file
        if rule is None or target is None:
            return None
        save_allow_rule(target, rule)
        self._rules["allow"].append(parse_rule(rule, self.settings.user_file_shown or str(target)))
        return rule

    def _options(self, prepared: PreparedCall) -> AnswerOptions:
        session = self._session_scope(prepared)
        if self.settings.user_file is None:
            return AnswerOptions(session, None, "there is no settings file to save a rule in")
        if self.unsandboxed_reason(prepared) is not None:
            why = "running outside the sandbox asks every time; no rule can skip it"
            return AnswerOptions(session, None, why)
        if self.protected_subject(prepared) is not None:
            why = "writes to .git/ and .cairn/ always ask; no rule or session allowance skips it"
            return AnswerOptions(session, None, why)
        rule = suggest_rule(prepared)
        if rule is None or not self._rule_would_allow(rule, prepared):
            return AnswerOptions(session, None)
        return AnswerOptions(session, rule)

    def _rule_would_allow(self, rule: str, prepared: PreparedCall) -> bool:
        """Whether saving `rule` would really let this call run unasked (an ask rule, a
        protected path or a mode may still stop it)."""
        allow = self._rules["allow"]
        allow.append(parse_rule(rule, "suggestion"))
        try:
            return self._verdict(prepared).decision == "allow"
        finally:
            allow.pop()

    def _session_scope(self, prepared: PreparedCall) -> str | None:
        """What "allow for this session" would cover, or None when only once is possible."""
        if self.unsandboxed_reason(prepared) is not None:
            return None
        if isinstance(prepared.args, ShellArgs):
            return "this command"
        if prepared.mcp is not None:
            return "this MCP tool"
        if prepared.web is not None:
            return f"pages of {prepared.web.host}"
        if call_kind(prepared.tool) == "shell" or self.protected_subject(prepared) is not None:
            return None
        return _KIND_WORDS[call_kind(prepared.tool)]

    def protected_subject(self, prepared: PreparedCall) -> str | None:
        """The first file in .git/, .cairn/ or the user's cairn config an edit would write."""
        if prepared.tool not in EDIT_TOOLS:
            return None
        for path in _subjects(prepared):
            if is_protected_path(path, self.settings.protected_paths):
                return path
        return None

    def _path_rule(self, kind: RuleKind, prepared: PreparedCall) -> Rule | None:
        """A deny or ask rule on reading or editing that covers a file a shell command names
        (`cat private/notes.txt` meets `read(private/**)`)."""
        if prepared.shell is None or not prepared.shell.paths:
            return None
        for rule in self._rules[kind]:
            if rule.tools & (READ_TOOLS | EDIT_TOOLS) and _rule_matches(
                rule, kind, "read", list(prepared.shell.paths)
            ):
                return rule
        return None

    def _matching(self, kind: RuleKind, tool: str, subjects: list[str]) -> Rule | None:
        for rule in self._rules[kind]:
            if tool in rule.tools and _rule_matches(rule, kind, tool, subjects):
                return rule
        return None

    def _secret_subject(self, prepared: PreparedCall) -> str | None:
        """The first secret file (by name or content) that a read, a one-file grep or a
        change would touch (prepare_call found them), unless the user allowed it."""
        return next((p for p in prepared.secret_paths if not self.secret_file_allowed(p)), None)

    def secret_file_allowed(self, path: str) -> bool:
        """Whether the user's allow_secret_files lets tools touch this workspace-relative path."""
        return any(_allow_path_matches(p, path) for p in self.settings.allow_secret_files)


_KIND_WORDS: dict[CallKind, str] = {
    "read": "reads",
    "edit": "edits",
    "shell": "shell commands",
    "mcp": "MCP tool calls",
    "web": "web fetches",
}


def _rule_tool(prepared: PreparedCall) -> str:
    """The tool name rules are written with: `mcp` for every MCP server's tool."""
    return MCP_RULE_TOOL if prepared.mcp is not None else prepared.tool


def _read_only_shell(prepared: PreparedCall) -> bool:
    """`ls`, `git status`, `rg`…: proven to only read inside the workspace, nothing flagged."""
    if prepared.shell is None or prepared.preview.warnings:
        return False
    return prepared.shell.read_only


def is_protected_path(path: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    """A path inside .git/ (at any depth), the repo's .cairn/, or one of `extra` folders."""
    parts = PurePosixPath(path).parts
    if ".git" in parts or (parts and parts[0] == ".cairn"):
        return True
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in extra)


# --------------------------------------------------------------------------- matching


def _subjects(prepared: PreparedCall) -> list[str]:
    """What rules match against: the command of a shell call, else the paths it touches."""
    args = prepared.args
    if prepared.mcp is not None:
        return [prepared.mcp.subject]
    if prepared.web is not None:
        return [prepared.web.host]
    if isinstance(args, ShellArgs):
        return [args.command]
    if prepared.changes:
        return [change.path for change in prepared.changes]
    if isinstance(args, (GrepArgs, GlobArgs)):
        return [args.path or "."]
    if isinstance(args, (ReadArgs, EditArgs, WriteArgs)):
        return [args.path]
    return []


def _rule_matches(rule: Rule, kind: RuleKind, tool: str, subjects: list[str]) -> bool:
    """Deny and ask rules match broadly (any piece, any file); allow rules narrowly (all)."""
    if rule.pattern is None:
        return True
    if not subjects:
        return False
    if tool == MCP_RULE_TOOL:  # `server:tool`, with fnmatch patterns on either part
        return all(fnmatchcase(subject, rule.pattern.strip()) for subject in subjects)
    if tool == FETCH_URL:  # `domain:example.com` (parsed to the host): it and its subdomains
        return all(host_in_domain(subject, rule.pattern) for subject in subjects)
    if tool == "shell":
        command = subjects[0].strip()
        if kind == "allow":
            return not _is_compound(command) and shell_matches(rule.pattern, command)
        return any(shell_matches(rule.pattern, piece) for piece in shell_pieces(command))
    if kind == "allow":
        return all(_allow_path_matches(rule.pattern, subject) for subject in subjects)
    spec = _gitignore_spec(rule.pattern)
    return any(subject != "." and spec.match_file(subject) for subject in subjects)


def host_in_domain(host: str, domain: str) -> bool:
    """Whether `host` is `domain` or one of its subdomains (docs.example.com in example.com;
    never notexample.com)."""
    return host == domain or host.endswith("." + domain)


def _is_compound(command: str) -> bool:
    """Chains, pipes, substitutions, redirections, or anything bash would not accept."""
    script = parse_shell(command)
    return bool(_SHELL_COMPOUND.search(command)) or script.errors or script.compound


def shell_pieces(command: str) -> list[str]:
    """What deny and ask rules look at: the whole line, and every command it may run (in
    chains, pipes and substitutions, behind sudo/env/timeout…, inside `sh -c '…'`), as written
    and as bash would see it (`\\rm`, `/bin/rm` → `rm`)."""
    pieces = [command]
    pieces += [p.strip() for p in _SHELL_PIECES.split(command)]  # also when it does not parse
    for simple in unwrapped_commands(parse_shell(command)):
        pieces.append(simple.text)
        pieces.append(" ".join([simple.name, *simple.args]))
    return list(dict.fromkeys(piece for piece in pieces if piece))


def _shell_pattern(text: str) -> str:
    """`shell(pip install:*)` or just `pip install:*`, as the user wrote it in settings."""
    match = re.fullmatch(r"\s*shell\s*\((?P<pattern>.*)\)\s*", text, re.DOTALL)
    return match.group("pattern") if match else text


def shell_matches(pattern: str, command: str) -> bool:
    """`pytest:*`: the command `pytest` with any arguments; a glob (`npm test*`, the older
    form) as fnmatch; anything else: exactly that command."""
    pattern = pattern.strip()
    if pattern.endswith(":*"):
        prefix = pattern[:-2].rstrip()
        return command == prefix or command.startswith((prefix + " ", prefix + "\t"))
    if _GLOB_CHARS.search(pattern):
        return fnmatchcase(command, pattern)
    return command == pattern


@lru_cache(maxsize=256)
def _gitignore_spec(pattern: str) -> pathspec.PathSpec[Any]:
    return pathspec.PathSpec.from_lines("gitignore", [pattern])


def _allow_path_matches(pattern: str, path: str) -> bool:
    return _anchored_glob(pattern.strip()).fullmatch(path) is not None


@lru_cache(maxsize=256)
def _anchored_glob(pattern: str) -> re.Pattern[str]:
    """The whole workspace-relative path: `*` and `?` stay in one folder, `**` crosses them."""
    pattern = pattern.removeprefix("./").removeprefix("/")
    out: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out))


# --------------------------------------------------------------------------- suggestions


def suggest_rule(prepared: PreparedCall) -> str | None:
    """The narrowest allow rule that would let this call run unasked, or None if no rule can
    (a compound command, a protected or secret file, an invalid call)."""
    if prepared.error is None and prepared.mcp is not None:
        return f"{MCP_RULE_TOOL}({prepared.mcp.subject})"
    if prepared.error is None and prepared.web is not None:  # the host, not any wider
        return f"{FETCH_URL}({DOMAIN_PREFIX}{prepared.web.host})"
    if prepared.error is not None or prepared.tool not in CLIENT_TOOLS:
        return None
    if isinstance(prepared.args, ShellArgs):
        return _suggest_shell(prepared.args.command.strip())
    paths = _subjects(prepared)
    if not paths or any(is_protected_path(p) or is_secret_name(p) for p in paths):
        return None
    if any(_GLOB_CHARS.search(p) or p == "." for p in paths):
        return None
    group = "edit" if prepared.tool in EDIT_TOOLS else "read"
    if len(paths) == 1:
        return f"{group}({paths[0]})"
    parents = {PurePosixPath(p).parent.as_posix() for p in paths}
    return f"{group}({parents.pop()}/*)" if len(parents) == 1 and "." not in parents else None


def _suggest_shell(command: str) -> str | None:
    if not command or _SHELL_COMPOUND.search(command) or _GLOB_CHARS.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0] in _RUNS_ANYTHING or "=" in words[0]:
        return f"shell({command})"
    leading: list[str] = []
    for word in words[:_SUGGESTED_WORDS]:
        if word.startswith("-") or "/" in word or "." in word or "=" in word:
            break
        leading.append(word)
    if not leading or not command.startswith(" ".join(leading)):
        return f"shell({command})"
    return f"shell({' '.join(leading)}:*)"
