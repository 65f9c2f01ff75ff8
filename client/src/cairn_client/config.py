"""The client's settings, read once from the environment when `cairn` starts and passed down.

Owns every environment variable the client reads (server, token, data folder, editor, ticket
sources) and the environment snapshot child processes start from; nothing else reads os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs
from cairn_protocol.validation import setting_problem
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from cairn_client.errors import CairnError, ExitCode

_SERVER_SCHEMES = frozenset({"http", "https", "ws", "wss"})


class ClientSettingsError(CairnError, ValueError):
    """A setting has a value the client cannot use; the message is one line for the user."""

    exit_code = ExitCode.USAGE


def process_env() -> dict[str, str]:
    """This process's environment now, read once at start into the settings' `process_env`:
    the snapshot git, the shell and the embedded server are given and start from."""
    return dict(os.environ)


class TicketSettings(BaseModel):
    """Where tickets come from: GitHub and Linear credentials and API addresses."""

    model_config = ConfigDict(frozen=True)

    github_token: str = Field("", validation_alias="GITHUB_TOKEN")
    github_api_url: str = Field("", validation_alias="CAIRN_GITHUB_API_URL")
    linear_api_key: str = Field("", validation_alias="LINEAR_API_KEY")
    linear_api_url: str = Field("", validation_alias="CAIRN_LINEAR_API_URL")

    @field_validator("*", mode="after")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TicketSettings:
        return cls.model_validate(env)


class ClientSettings(BaseModel):
    """The `cairn` process's settings; `from_env` builds and validates them at start."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, validate_default=True
    )

    server_url: str | None = Field(None, validation_alias="CAIRN_SERVER_URL")
    token: str | None = Field(None, validation_alias="CAIRN_TOKEN")
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("cairn")),
        validation_alias="CAIRN_DATA_DIR",
    )
    # The embedded server's database (default: a SQLite file in data_dir).
    database_url: str | None = Field(None, validation_alias="CAIRN_DATABASE_URL")
    # The background local server stops after this long with no client and no run.
    idle_exit_s: float = Field(1800.0, gt=0.0, validation_alias="CAIRN_IDLE_EXIT_S")
    editor: str = Field("vi", validation_alias=AliasChoices("VISUAL", "EDITOR"))
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    # What child processes start from: the environment as it was at start.
    process_env: dict[str, str] = Field(default_factory=process_env)

    @field_validator("server_url")
    @classmethod
    def _a_server_address(cls, value: str | None) -> str | None:
        """http(s)://, ws(s):// or a bare host[:port]; anything else fails at start."""
        if value is None:
            return None
        scheme, has_scheme, rest = value.partition("://")
        if has_scheme and scheme.lower() not in _SERVER_SCHEMES:
            raise ValueError("use an http://, https://, ws:// or wss:// address")
        if not (rest if has_scheme else value).strip("/") or any(c.isspace() for c in value):
            raise ValueError("not a server address")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        """Settings from `env` (default: this process's environment); ClientSettingsError
        names the variable that is wrong."""
        source = process_env() if env is None else dict(env)
        # By variable name only (a variable called `token` is not CAIRN_TOKEN); empty is unset.
        given: dict[str, Any] = {
            name: value for name, value in source.items() if value and name not in cls.model_fields
        }
        try:
            return cls(**given, tickets=TicketSettings.from_env(source), process_env=source)
        except ValidationError as exc:
            raise ClientSettingsError(setting_problem(exc, cls.model_fields)) from None


def websocket_url(server_url: str) -> str:
    """http(s)://host[:port][/base] → ws(s)://host[:port][/base]/v1/ws."""
    url = server_url.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url.removeprefix("https://")
    elif url.startswith("http://"):
        url = "ws://" + url.removeprefix("http://")
    elif not url.startswith(("ws://", "wss://")):
        url = "ws://" + url
    return url if url.endswith("/v1/ws") else url + "/v1/ws"
