"""Which MCP servers this client starts: `[mcp.servers.NAME]` tables and the trust they need.

Owns reading the tables from the user's settings.toml and the repository's
`.cairn/settings.toml`, and the private record (in the data folder) of the repository configs
the user trusted, keyed by their content hash: a changed config must be trusted again.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn_protocol.mcp import SERVER_NAME

from cairn_client.policy.settings import REPO_SETTINGS_PATH, SettingsError, user_settings_file
from cairn_client.private_files import private_dir

TRUST_FILE_NAME = "mcp-trust.json"
DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_START_TIMEOUT_S = 20.0
_KEYS = {"command", "args", "env", "cwd", "timeout_s", "start_timeout_s"}


@dataclass(frozen=True)
class McpServerConfig:
    """One stdio MCP server: the command that starts it and the limits of its calls."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S  # one call, from request to answer
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S  # starting and listing its tools
    source: str = "settings"  # the file it came from, for messages

    def describe(self) -> str:
        return " ".join([self.command, *self.args])


@dataclass(frozen=True)
class McpSetup:
    """The servers to start, and those a repository configures that the user has not
    trusted (not started: `cairn mcp trust` starts them from then on)."""

    servers: tuple[McpServerConfig, ...] = ()
    untrusted: tuple[McpServerConfig, ...] = ()
    repo_hash: str | None = None  # the content hash of the repository's servers, if any
    notes: tuple[str, ...] = field(default=())

    def untrusted_note(self) -> str | None:
        """The one line that says what was not started and how to start it."""
        if not self.untrusted:
            return None
        names = ", ".join(server.name for server in self.untrusted)
        return (
            f"MCP: {REPO_SETTINGS_PATH.as_posix()} configures servers not started until you "
            f"trust them ({names}); run `cairn mcp trust` to review and trust them"
        )


def load_mcp_setup(workspace_root: Path, data_dir: Path, user_file: Path | None = None) -> McpSetup:
    """The user's servers and the repository's trusted ones (a name in both: the user's);
    SettingsError for a malformed table."""
    user_path = user_file or user_settings_file()
    user = read_servers(user_path, str(user_path))
    repo_path = workspace_root / REPO_SETTINGS_PATH
    repo = read_servers(repo_path, REPO_SETTINGS_PATH.as_posix())
    names = {server.name for server in user}
    repo = [server for server in repo if server.name not in names]
    if not repo:
        return McpSetup(tuple(user))
    digest = config_hash(repo)
    if is_trusted(data_dir, digest):
        return McpSetup((*user, *repo), repo_hash=digest)
    return McpSetup(tuple(user), tuple(repo), digest)


def config_hash(servers: list[McpServerConfig] | tuple[McpServerConfig, ...]) -> str:
    """The content hash of servers as configured: any change of a command, argument,
    variable or limit gives another hash."""
    canonical = json.dumps(
        [
            [s.name, s.command, list(s.args), sorted(s.env), s.cwd, s.timeout_s, s.start_timeout_s]
            for s in sorted(servers, key=lambda server: server.name)
        ],
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def is_trusted(data_dir: Path, digest: str) -> bool:
    return digest in _read_trust(data_dir)


def trust(data_dir: Path, digest: str, workspace_root: Path) -> None:
    """Record that the user trusts the repository servers whose config has `digest`."""
    trusted = _read_trust(data_dir)
    trusted[digest] = str(workspace_root)
    path = private_dir(data_dir) / TRUST_FILE_NAME
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(trusted, indent=1), encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def _read_trust(data_dir: Path) -> dict[str, str]:
    try:
        data: Any = json.loads((data_dir / TRUST_FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(key): str(value) for key, value in data.items()}


def read_servers(path: Path, shown: str) -> list[McpServerConfig]:
    """The `[mcp.servers.NAME]` tables of one settings file (none when it is missing)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{shown}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{shown}: invalid TOML: {exc}") from None
    mcp = data.get("mcp", {})
    servers = mcp.get("servers", {}) if isinstance(mcp, dict) else None
    if not isinstance(servers, dict):
        raise SettingsError(f"{shown}: [mcp.servers] must hold one table per server")
    return [_server(name, table, shown) for name, table in servers.items()]


def _server(name: str, table: Any, shown: str) -> McpServerConfig:
    where = f"{shown}: [mcp.servers.{name}]"
    if not SERVER_NAME.fullmatch(name):
        raise SettingsError(
            f"{where}: a server's name is up to 30 letters, digits, '-' or single '_'"
        )
    if not isinstance(table, dict):
        raise SettingsError(f"{where} must be a table with command, args and env")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise SettingsError(f"{where} has unknown key {unknown[0]!r}; keys are {sorted(_KEYS)}")
    command = table.get("command")
    if not isinstance(command, str) or not command.strip():
        raise SettingsError(f'{where} needs command = "the program that starts it"')
    args = table.get("args", [])
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise SettingsError(f"{where}: args must be a list of strings")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise SettingsError(f'{where}: env must be a table of strings, e.g. {{ TOKEN = "…" }}')
    cwd = table.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        raise SettingsError(f"{where}: cwd must be a string")
    return McpServerConfig(
        name=name,
        command=command.strip(),
        args=tuple(args),
        env=tuple(sorted(env.items())),
        cwd=cwd,
        timeout_s=_seconds(table, "timeout_s", DEFAULT_CALL_TIMEOUT_S, where),
        start_timeout_s=_seconds(table, "start_timeout_s", DEFAULT_START_TIMEOUT_S, where),
        source=shown,
    )


def _seconds(table: dict[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise SettingsError(f"{where}: {key} must be a number of seconds between 0 and 3600")
    return float(value)
