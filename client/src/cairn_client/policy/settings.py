"""Policy settings: the mode and deny/ask/allow rules, from the user's and the repo's files.

Owns the settings.toml format (and the older settings.json), merging the user's file with
the repo's narrowing one, and rule syntax; the decisions themselves live in policy.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs
import tomlkit
import tomlkit.exceptions
from cairn_protocol.tools import CLIENT_TOOLS, FETCH_URL

from cairn_client.errors import CairnError, ExitCode
from cairn_client.policy.types import MODES, Mode, as_mode, narrows
from cairn_client.tools.sandbox import SandboxSettings

SETTINGS_FILE_NAME = "settings.toml"
LEGACY_SETTINGS_FILE_NAME = "settings.json"
REPO_SETTINGS_DIR = Path(".cairn")
REPO_SETTINGS_PATH = REPO_SETTINGS_DIR / SETTINGS_FILE_NAME
RuleKind = Literal["deny", "ask", "allow"]
RULE_KINDS: tuple[RuleKind, ...] = ("deny", "ask", "allow")
# A rule on `read` covers every reading tool, on `edit` every editing tool (by their kind).
TOOL_GROUPS: dict[str, frozenset[str]] = {
    group: frozenset(name for name, tool in CLIENT_TOOLS.items() if tool.kind == group)
    for group in ("read", "edit")
}
# `mcp(server:tool)` (patterns as fnmatch: `mcp(github:*)`): the tools of MCP servers.
MCP_RULE_TOOL = "mcp"
# `fetch_url(domain:example.com)`: pages of that host and its subdomains; `fetch_url`: any.
DOMAIN_PREFIX = "domain:"
_DOMAIN = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")  # IDNA host names, IPv4
_RULE = re.compile(r"^\s*(?P<tool>[A-Za-z_]+)\s*(?:\((?P<pattern>.*)\))?\s*$", re.DOTALL)


class SettingsError(CairnError):
    exit_code = ExitCode.USAGE

    """A settings file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    """One rule: a tool (or group), optionally narrowed by a pattern on its command or path."""

    tool: str  # as named in the rule, lower case: a tool or a group ("read", "edit")
    pattern: str | None  # None: every call of the tool
    text: str  # as written in the file, for messages
    source: str  # the file it came from, for messages

    @property
    def tools(self) -> frozenset[str]:
        return TOOL_GROUPS.get(self.tool, frozenset({self.tool}))


@dataclass
class PolicySettings:
    mode: Mode = "default"
    allow: list[str] = field(default_factory=list)
    ask: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    # Workspace-relative paths (or allow-style patterns) of secret-looking files the user
    # lets tools read; only the user's own file can grant this.
    allow_secret_files: list[str] = field(default_factory=list)
    # rule text -> the file it came from, so a verdict can say where a rule lives
    sources: dict[str, str] = field(default_factory=dict)
    # What was in a file but deliberately not applied (a repo's allow rules...), for the user.
    ignored: list[str] = field(default_factory=list)
    # The user's settings file as shown in messages, e.g. "~/.config/cairn/settings.toml",
    # and where "allow always" writes (None: nowhere, e.g. settings made in code).
    user_file_shown: str = ""
    user_file: Path | None = None
    # Workspace-relative folders besides .git/ and .cairn/ whose writes always ask: the
    # user's cairn config folder, when the workspace contains it (e.g. a home directory).
    protected_paths: list[str] = field(default_factory=list)
    # The user's [sandbox] table; a repository's file cannot change it.
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)

    def rules(self, kind: RuleKind) -> list[Rule]:
        texts = {"deny": self.deny, "ask": self.ask, "allow": self.allow}[kind]
        return [parse_rule(text, self.sources.get(text, "settings")) for text in texts]


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir("cairn"))


def user_settings_file() -> Path:
    return user_config_dir() / SETTINGS_FILE_NAME


def load_settings(workspace_root: Path, user_file: Path | None = None) -> PolicySettings:
    """The user's settings, narrowed by the repo's `.cairn/settings.toml`.

    A cloned repository is untrusted, so its file can only take permissions away: its deny and
    ask rules are added and its mode applies only where it narrows the user's; its allow rules,
    allow_secret_files and a wider mode are ignored (and listed in `ignored`). The older
    settings.json next to each settings.toml is still read. Missing files are fine; a
    malformed one raises SettingsError.
    """
    user_paths = [user_file] if user_file is not None else _with_legacy(user_settings_file())
    repo_paths = _with_legacy(workspace_root / REPO_SETTINGS_PATH)
    merged = PolicySettings(
        user_file_shown=_shown_user_path(user_paths[0]),
        user_file=user_paths[0],
        protected_paths=_config_dirs_inside(workspace_root, user_paths[0].parent),
    )
    mode: Mode | None = None
    for path in user_paths:
        layer = _load_file(path, _shown_user_path(path))
        if layer is None:
            continue
        mode = mode or layer.mode  # settings.toml (first) wins over settings.json
        _add_rules(merged, layer, ("deny", "ask", "allow"))
        merged.allow_secret_files += layer.allow_secret_files
        if layer.sandbox is not None and merged.sandbox == SandboxSettings():
            merged.sandbox = layer.sandbox  # settings.toml (first) wins over settings.json
    merged.mode = mode or "default"
    for path in repo_paths:
        layer = _load_file(path, path.relative_to(workspace_root).as_posix())
        if layer is not None:
            _narrow_by_repo(merged, layer)
    return merged


def parse_rule(text: str, source: str) -> Rule:
    """`shell`, `shell(pytest:*)`, `edit(src/**)`: a tool name, or read/edit for the groups."""
    match = _RULE.match(text)
    if match is None:
        raise SettingsError(f"{source}: rule {text!r} is not `tool` or `tool(pattern)`")
    tool = match.group("tool").lower()
    known = (MCP_RULE_TOOL, FETCH_URL)
    if tool not in CLIENT_TOOLS and tool not in TOOL_GROUPS and tool not in known:
        raise SettingsError(
            f"{source}: rule {text!r} names unknown tool {tool!r}; tools are "
            f"{', '.join(sorted(CLIENT_TOOLS))}, mcp(server:tool) and "
            "fetch_url(domain:example.com)"
        )
    pattern = match.group("pattern")
    if pattern is not None and not pattern.strip():
        raise SettingsError(f"{source}: rule {text!r} has an empty pattern; write just {tool!r}")
    if tool == FETCH_URL and pattern is not None:
        pattern = _domain_pattern(text, pattern, source)
    return Rule(tool=tool, pattern=pattern, text=text.strip(), source=source)


def _domain_pattern(text: str, pattern: str, source: str) -> str:
    """The host of `domain:example.com`, in lower case; SettingsError for anything else."""
    written = pattern.strip()
    domain = written.removeprefix(DOMAIN_PREFIX).strip().lower().rstrip(".")
    try:  # пример.рф is matched as the server sends it: xn--e1afmkfd.xn--p1ai
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    if not written.startswith(DOMAIN_PREFIX) or not _DOMAIN.match(domain):
        raise SettingsError(
            f"{source}: rule {text!r}: a fetch_url rule names a host as "
            "fetch_url(domain:example.com) (that host and its subdomains)"
        )
    return domain


# --------------------------------------------------------------------------- files


@dataclass
class _Layer:
    shown: str
    mode: Mode | None
    rules: dict[RuleKind, list[str]]
    allow_secret_files: list[str]
    sandbox: SandboxSettings | None = None


def _config_dirs_inside(workspace_root: Path, *folders: Path) -> list[str]:
    root = workspace_root.resolve()
    inside = []
    for folder in {user_config_dir(), *folders}:
        resolved = folder.resolve()
        if resolved.is_relative_to(root) and resolved != root:
            inside.append(resolved.relative_to(root).as_posix())
    return sorted(inside)


def save_allow_rule(settings_file: Path, rule: str) -> None:
    """Add `rule` to `allow` under [permissions] in the user's settings.toml, keeping the
    rest of the file as the user wrote it (comments, order); the file is replaced at once."""
    parse_rule(rule, str(settings_file))  # never write a rule the loader would refuse
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise SettingsError(f"cannot read {settings_file}: {exc}") from exc
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise SettingsError(f"{settings_file} is not valid TOML: {exc}") from exc
    permissions = document.setdefault("permissions", tomlkit.table())
    allow = permissions.setdefault("allow", tomlkit.array())
    if not isinstance(allow, list):
        raise SettingsError(f"{settings_file}: permissions.allow must be a list of rules")
    if rule not in allow:
        allow.append(rule)
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = settings_file.with_name(f".{settings_file.name}.tmp")
    temporary.write_text(tomlkit.dumps(document), encoding="utf-8")
    temporary.replace(settings_file)


def _with_legacy(toml_path: Path) -> list[Path]:
    return [toml_path, toml_path.with_name(LEGACY_SETTINGS_FILE_NAME)]


def _add_rules(merged: PolicySettings, layer: _Layer, kinds: tuple[RuleKind, ...]) -> None:
    for kind in kinds:
        target = {"deny": merged.deny, "ask": merged.ask, "allow": merged.allow}[kind]
        for text in layer.rules[kind]:
            if text not in target:
                target.append(text)
            merged.sources.setdefault(text, layer.shown)


def _narrow_by_repo(merged: PolicySettings, layer: _Layer) -> None:
    _add_rules(merged, layer, ("deny", "ask"))
    if layer.mode is not None and layer.mode != merged.mode:
        if narrows(layer.mode, merged.mode):
            merged.mode = layer.mode
        else:
            merged.ignored.append(
                f"{layer.shown}: mode {layer.mode!r} would widen {merged.mode!r}; ignored"
            )
    if layer.rules["allow"]:
        merged.ignored.append(
            f"{layer.shown}: allow rules are ignored (a repository cannot widen permissions); "
            "put them in your own settings.toml"
        )
    if layer.allow_secret_files:
        merged.ignored.append(f"{layer.shown}: allow_secret_files is ignored in a repository")
    if layer.sandbox is not None:
        merged.ignored.append(f"{layer.shown}: [sandbox] is ignored in a repository")


def _load_file(path: Path, shown: str) -> _Layer | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{shown}: cannot read it: {exc}") from None
    if path.suffix == ".json":
        return _legacy_layer(_parse_json(text, shown), shown)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{shown}: invalid TOML: {exc}") from None
    # Other keys and tables are left alone: the same file may hold other client settings.
    permissions = data.get("permissions", {})
    if not isinstance(permissions, dict):
        raise SettingsError(f"{shown}: [permissions] must be a table")
    return _Layer(
        shown=shown,
        mode=_mode(data, "mode", shown),
        rules={kind: _rule_list(permissions, kind, shown) for kind in RULE_KINDS},
        allow_secret_files=_string_list(permissions, "allow_secret_files", shown, '".env.test"'),
        sandbox=_sandbox_settings(data, shown),
    )


def _sandbox_settings(data: dict[str, Any], shown: str) -> SandboxSettings | None:
    """`[sandbox]`: enabled, network, network_commands (shell rules), env (variable names)."""
    if "sandbox" not in data:
        return None
    table = data["sandbox"]
    if not isinstance(table, dict):
        raise SettingsError(f"{shown}: [sandbox] must be a table")
    known = {"enabled", "network", "network_commands", "env"}
    unknown = sorted(set(table) - known)
    if unknown:
        keys = ", ".join(sorted(known))
        raise SettingsError(f"{shown}: [sandbox] has unknown key {unknown[0]!r}; keys are {keys}")
    flags: dict[str, bool] = {}
    for key in ("enabled", "network"):
        value = table.get(key, key == "enabled")
        if not isinstance(value, bool):
            raise SettingsError(f"{shown}: sandbox.{key} must be true or false")
        flags[key] = value
    commands = _string_list(table, "network_commands", shown, '"shell(pip install:*)"')
    for command in commands:
        if command.startswith("shell"):
            parse_rule(command, shown)
    names = _string_list(table, "env", shown, '"CARGO_HOME"')
    bad = [name for name in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
    if bad:
        raise SettingsError(f"{shown}: sandbox.env names variables; {bad[0]!r} is not a name")
    return SandboxSettings(
        enabled=flags["enabled"],
        network=flags["network"],
        network_commands=tuple(commands),
        env=tuple(names),
    )


def _parse_json(text: str, shown: str) -> dict[str, Any]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{shown}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"{shown}: expected a JSON object with approve, allow and deny")
    return data


def _legacy_layer(data: dict[str, Any], shown: str) -> _Layer:
    """settings.json: {"approve": "none|edits|all", "allow": [...], "deny": [...]}."""
    return _Layer(
        shown=shown,
        mode=_mode(data, "approve", shown),
        rules={
            "deny": _rule_list(data, "deny", shown),
            "ask": _rule_list(data, "ask", shown),
            "allow": _rule_list(data, "allow", shown),
        },
        allow_secret_files=[],
    )


def _mode(data: dict[str, Any], key: str, shown: str) -> Mode | None:
    if key not in data:
        return None
    value = data[key]
    mode = as_mode(value) if isinstance(value, str) else None
    if mode is None:
        raise SettingsError(f"{shown}: {key} must be one of {', '.join(MODES)}, not {value!r}")
    return mode


def _rule_list(data: dict[str, Any], key: str, shown: str) -> list[str]:
    rules = _string_list(data, key, shown, '"shell(pytest:*)"')
    for rule in rules:
        parse_rule(rule, shown)
    return rules


def _string_list(data: dict[str, Any], key: str, shown: str, example: str) -> list[str]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise SettingsError(f"{shown}: {key} must be a list of strings such as {example}")
    return [value.strip() for value in values]


def _shown_user_path(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home).as_posix()}" if path.is_relative_to(home) else str(path)
