"""Policy settings: the approve mode and allow/deny rules, from the user's and the repo's files.

Owns the settings file format, loading and merging the two files, and rule syntax
(`tool` or `tool(glob)`); the decisions themselves live in policy.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import platformdirs
from cairn_protocol.tools import CLIENT_TOOLS

from cairn_client.policy.types import ApproveMode

SETTINGS_FILE_NAME = "settings.json"
REPO_SETTINGS_PATH = Path(".cairn") / SETTINGS_FILE_NAME
_RULE = re.compile(r"^\s*(?P<tool>[A-Za-z_]+)\s*(?:\((?P<pattern>.*)\))?\s*$", re.DOTALL)


class SettingsError(Exception):
    """A settings file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    """One allow or deny rule: a tool, optionally narrowed by a glob on its command or path."""

    tool: str
    pattern: str | None  # None: every call of the tool
    text: str  # as written in the file, for messages
    source: str  # the file it came from, for messages


@dataclass
class PolicySettings:
    approve: ApproveMode = "none"
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    # rule text -> the file it came from, so a verdict can say where a rule lives
    sources: dict[str, str] = field(default_factory=dict)

    def allow_rules(self) -> list[Rule]:
        return [parse_rule(text, self.sources.get(text, "settings")) for text in self.allow]

    def deny_rules(self) -> list[Rule]:
        return [parse_rule(text, self.sources.get(text, "settings")) for text in self.deny]


def user_settings_file() -> Path:
    return Path(platformdirs.user_config_dir("cairn")) / SETTINGS_FILE_NAME


def load_settings(workspace_root: Path, user_file: Path | None = None) -> PolicySettings:
    """The user's settings, narrowed by the repo's `.cairn/settings.json`.

    A cloned repository is untrusted, so its file can only take permissions away: its deny
    rules are added and its approve mode applies only where it is stricter than the user's;
    its allow rules and a wider approve mode are ignored. Missing files are fine; a malformed
    one raises SettingsError.
    """
    user_path = user_file if user_file is not None else user_settings_file()
    user = _load_file(user_path, _shown_user_path(user_path))
    repo = _load_file(workspace_root / REPO_SETTINGS_PATH, REPO_SETTINGS_PATH.as_posix())
    merged = PolicySettings()
    for layer in (user, repo):
        if layer is None:
            continue
        if layer is user:
            merged.approve = layer.settings.approve if layer.approve_set else merged.approve
            merged.allow += layer.settings.allow
        elif layer.approve_set:
            merged.approve = min(
                merged.approve, layer.settings.approve, key=_STRICTNESS.__getitem__
            )
        merged.deny += layer.settings.deny
        for text, source in layer.settings.sources.items():
            if text in merged.allow or text in merged.deny:
                merged.sources.setdefault(text, source)
    return merged


# How much runs without asking: a repository may lower it, never raise it.
_STRICTNESS = {"none": 0, "edits": 1, "all": 2}


def parse_rule(text: str, source: str) -> Rule:
    """`shell`, `shell(npm test*)`, `edit(src/*)`: tool names as in the tool schemas."""
    match = _RULE.match(text)
    if match is None:
        raise SettingsError(f"{source}: rule {text!r} is not `tool` or `tool(pattern)`")
    tool = match.group("tool").lower()
    if tool not in CLIENT_TOOLS:
        raise SettingsError(
            f"{source}: rule {text!r} names unknown tool {tool!r}; tools are "
            f"{', '.join(sorted(CLIENT_TOOLS))}"
        )
    pattern = match.group("pattern")
    if pattern is not None and not pattern.strip():
        raise SettingsError(f"{source}: rule {text!r} has an empty pattern; write just {tool!r}")
    return Rule(tool=tool, pattern=pattern, text=text.strip(), source=source)


@dataclass
class _Layer:
    settings: PolicySettings
    approve_set: bool


def _load_file(path: Path, shown: str) -> _Layer | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{shown}: cannot read it: {exc}") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{shown}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"{shown}: expected a JSON object with approve, allow and deny")
    return _Layer(settings=_settings_from(data, shown), approve_set="approve" in data)


def _settings_from(data: dict[str, Any], shown: str) -> PolicySettings:
    # Other top-level keys are left alone: the same file may hold other client settings.
    approve = data.get("approve", "none")
    modes = get_args(ApproveMode)
    if approve not in modes:
        raise SettingsError(f"{shown}: approve must be one of {', '.join(modes)}, not {approve!r}")
    allow = _rule_list(data, "allow", shown)
    deny = _rule_list(data, "deny", shown)
    return PolicySettings(
        approve=approve, allow=allow, deny=deny, sources={text: shown for text in allow + deny}
    )


def _rule_list(data: dict[str, Any], key: str, shown: str) -> list[str]:
    rules = data.get(key, [])
    if not isinstance(rules, list) or not all(isinstance(rule, str) for rule in rules):
        raise SettingsError(f'{shown}: {key} must be a list of strings such as "shell(make *)"')
    for rule in rules:
        parse_rule(rule, shown)
    return [rule.strip() for rule in rules]


def _shown_user_path(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home).as_posix()}" if path.is_relative_to(home) else str(path)
