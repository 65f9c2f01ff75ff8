"""Server settings: every CAIRN_* knob (and the model vendors' keys), typed and validated once.

Owns the variable names, their defaults and ranges (a bad value's one-line error is worded by
cairn_protocol.validation); the CLI or the app factory builds them at start and passes them down.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from cairn_protocol.validation import setting_problem, variable_names
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from cairn_server.errors import CairnServerError

# Below this, the instructions and tool schemas alone would not fit a request.
MIN_BUDGET = 2000
MODEL_ENV = "CAIRN_MODEL"
RETRIES_ENV = "CAIRN_MODEL_RETRIES"
RETRY_BASE_DELAY_ENV = "CAIRN_RETRY_BASE_DELAY_S"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
ANTHROPIC_KEY_ENV = "ANTHROPIC_API_KEY"
ANTHROPIC_BASE_URL_ENV = "ANTHROPIC_BASE_URL"
MAX_TOKENS_ENV = "CAIRN_MODEL_MAX_TOKENS"
TOOL_CHOICE_ENV = "CAIRN_MODEL_TOOL_CHOICE"
# What an OpenAI-compatible request says about tools: "auto", "required" or "none" sent as
# tool_choice, "omit" sends none; unset, Cairn decides per server (see providers/tool_use.py).
ToolChoiceSetting = Literal["auto", "required", "none", "omit"]


S = TypeVar("S", bound=BaseModel)


class SettingsError(CairnServerError, ValueError):
    """A CAIRN_* variable Cairn cannot use; the message names it and what it expects."""


_GROUP = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ModelSettings(BaseModel):
    """Which model runs by default, which one summarises, the vendors' keys and retries."""

    model_config = _GROUP

    default_model: str | None = Field(None, validation_alias=MODEL_ENV)
    # A cheaper model for compaction summaries; the run's own model when unset.
    summary_model: str | None = Field(None, validation_alias="CAIRN_SUMMARY_MODEL")
    # A cheaper model for reflection (sleep-time memory); the summary model when unset, then
    # the conversation's own model.
    reflection_model: str | None = Field(None, validation_alias="CAIRN_REFLECTION_MODEL")
    retries: int = Field(4, ge=0, validation_alias=RETRIES_ENV)
    retry_base_delay_s: float = Field(
        0.5, ge=0.0, allow_inf_nan=False, validation_alias=RETRY_BASE_DELAY_ENV
    )
    openai_api_key: str | None = Field(None, validation_alias=OPENAI_KEY_ENV, repr=False)
    openai_base_url: str | None = Field(None, validation_alias=OPENAI_BASE_URL_ENV)
    anthropic_api_key: str | None = Field(None, validation_alias=ANTHROPIC_KEY_ENV, repr=False)
    anthropic_base_url: str | None = Field(None, validation_alias=ANTHROPIC_BASE_URL_ENV)
    # The cap on one answer's tokens; None: a quarter of the model's window, at most 4096.
    max_tokens: int | None = Field(None, ge=16, validation_alias=MAX_TOKENS_ENV)
    tool_choice: ToolChoiceSetting | None = Field(None, validation_alias=TOOL_CHOICE_ENV)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ModelSettings:
        return _validated(cls, _environment(env), {})


class EmbeddingSettings(BaseModel):
    """Optional OpenAI-compatible embeddings: on when a model is named. The base URL and key
    fall back to OpenAI's variables (then to OpenAI's URL and a placeholder key)."""

    model_config = _GROUP

    model: str | None = Field(None, validation_alias="CAIRN_EMBEDDING_MODEL")
    base_url: str | None = Field(
        None, validation_alias=AliasChoices("CAIRN_EMBEDDING_BASE_URL", OPENAI_BASE_URL_ENV)
    )
    api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("CAIRN_EMBEDDING_API_KEY", OPENAI_KEY_ENV),
        repr=False,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmbeddingSettings:
        return _validated(cls, _environment(env), {})


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchAllowance:
    """One destination fetch_url may reach although it is not public: a network (one address
    is a /32 or /128) or a host name as written in the URL, on any port or on `port` only."""

    network: IpNetwork | None = None
    host: str | None = None
    port: int | None = None


def fetch_allowance(text: str) -> FetchAllowance:
    """`10.0.0.0/8`, `192.168.1.5`, `[::1]:8080`, `127.0.0.1:8080`, `intranet.local`, or
    `intranet.local:8443`; ValueError naming what is wrong."""
    where, port = _split_port(text.strip())
    try:
        return FetchAllowance(network=ipaddress.ip_network(where, strict=False), port=port)
    except ValueError:
        pass
    name = where.lower().rstrip(".")
    if not _HOST_NAME.fullmatch(name):
        raise ValueError(
            f"{text!r} is not an address, network (CIDR) or host name, optionally with :port"
        )
    return FetchAllowance(host=name, port=port)


_HOST_NAME = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*")


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [IPv6]:port
        address, _, rest = text[1:].partition("]")
        return address, _port(rest.removeprefix(":"), text) if rest else None
    if text.count(":") == 1:  # host:port or IPv4:port; more colons: a bare IPv6 address
        where, _, port = text.partition(":")
        return where, _port(port, text)
    return text, None


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r} has no valid port (1 to 65535) after the colon")
    return int(text)


def _allowances(value: object) -> object:
    """A comma- or space-separated variable, or what the constructor was given."""
    if isinstance(value, str):
        return tuple(fetch_allowance(entry) for entry in value.replace(",", " ").split())
    return value


class FetchSettings(BaseModel):
    """fetch_url's limits, its cache, and which non-public destinations it may reach (none
    by default: private, loopback, link-local and other special addresses are refused)."""

    model_config = _GROUP

    # Off: the tool is not offered at all (nothing is fetched without a person asking).
    enabled: bool = Field(True, validation_alias="CAIRN_FETCH_ENABLED")
    allow_private: bool = Field(False, validation_alias="CAIRN_FETCH_ALLOW_PRIVATE")
    allow: Annotated[tuple[FetchAllowance, ...], BeforeValidator(_allowances)] = Field(
        (), validation_alias="CAIRN_FETCH_ALLOW"
    )
    max_bytes: int = Field(2_000_000, ge=1024, validation_alias="CAIRN_FETCH_MAX_BYTES")
    timeout_s: float = Field(20.0, ge=1.0, validation_alias="CAIRN_FETCH_TIMEOUT_S")
    max_redirects: int = Field(5, ge=0, le=20, validation_alias="CAIRN_FETCH_MAX_REDIRECTS")
    # 0 turns the cache off.
    cache_ttl_s: float = Field(900.0, ge=0.0, validation_alias="CAIRN_FETCH_CACHE_TTL_S")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FetchSettings:
        return _validated(cls, _environment(env), {})


class HelperSettings(BaseModel):
    """What a helper run (the `task` tool) may spend when its caller names no budget; a
    helper's budget is also capped by what its parent run has left."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    steps: int = Field(30, ge=1, validation_alias="CAIRN_HELPER_STEP_LIMIT")
    tokens: int = Field(400_000, ge=1, validation_alias="CAIRN_HELPER_TOKEN_LIMIT")
    seconds: float = Field(600.0, gt=0.0, validation_alias="CAIRN_HELPER_TIME_LIMIT_S")


class ServerSettings(BaseModel):
    """The server process's settings. `from_env` reads the environment (or a mapping given
    for it); the constructor takes values by field name and reads nothing."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, validate_default=True
    )

    # None: a SQLite file in the user's data folder (storage.db.default_database_url).
    database_url: str | None = Field(None, validation_alias="CAIRN_DATABASE_URL")
    # Database connections kept open per process; as many more are opened in a burst. No
    # connection is held across a model call or a tool wait, only for a step's writes.
    database_pool_size: int = Field(10, ge=1, validation_alias="CAIRN_DATABASE_POOL_SIZE")
    # Prometheus metrics at GET /metrics (off by default: the local server needs none).
    metrics: bool = Field(False, validation_alias="CAIRN_METRICS")
    host: str = Field("127.0.0.1", validation_alias="CAIRN_HOST")
    port: int = Field(8765, ge=0, validation_alias="CAIRN_PORT")
    # Model calls per run. Long enough for a coding task of many reads and edits (a 60-read
    # task needs ~65); spending is bounded by the token and cost limits below, not by this.
    step_limit: int = Field(200, ge=1, validation_alias="CAIRN_STEP_LIMIT")
    approval_timeout_s: float = Field(900.0, ge=1.0, validation_alias="CAIRN_APPROVAL_TIMEOUT_S")
    # How long a withdrawn call's executor has to say what happened (e.g. a command it killed).
    withdraw_grace_s: float = Field(5.0, ge=0.0, validation_alias="CAIRN_WITHDRAW_GRACE_S")
    context_budget: int = Field(100_000, ge=MIN_BUDGET, validation_alias="CAIRN_CONTEXT_BUDGET")
    compaction_threshold: float = Field(
        0.8, ge=0.1, le=1.0, validation_alias="CAIRN_COMPACTION_THRESHOLD"
    )
    # Past this share of the context budget, MCP tool schemas are deferred behind tool_search.
    mcp_tool_share: float = Field(0.1, ge=0.0, le=1.0, validation_alias="CAIRN_MCP_TOOL_SHARE")
    run_token_limit: int = Field(2_000_000, ge=1, validation_alias="CAIRN_RUN_TOKEN_LIMIT")
    run_cost_limit_usd: float = Field(5.0, ge=0.0, validation_alias="CAIRN_RUN_COST_LIMIT_USD")
    repeat_limit: int = Field(3, ge=1, validation_alias="CAIRN_REPEAT_LIMIT")
    # Unsent events a websocket client may fall behind by before it is closed (4413).
    ws_backlog_mb: int = Field(16, ge=1, validation_alias="CAIRN_WS_BACKLOG_MB")
    bootstrap_token: str | None = Field(None, validation_alias="CAIRN_BOOTSTRAP_TOKEN", repr=False)
    # Exit after this long with no connection and no run (None: never; `cairn` sets it for
    # the local server it starts in the background).
    idle_exit_s: float | None = Field(None, gt=0.0, validation_alias="CAIRN_IDLE_EXIT_S")
    bootstrap_user: str = Field("local", validation_alias="CAIRN_BOOTSTRAP_USER")
    # The key MCP servers' headers are sealed with (Fernet: 32 url-safe base64 bytes); None:
    # the key file, made on first use (default: beside the SQLite database, or in the user's
    # data folder). Replicas sharing a database need the same key.
    secret_key: str | None = Field(None, validation_alias="CAIRN_SECRET_KEY", repr=False)
    secret_key_file: str | None = Field(None, validation_alias="CAIRN_SECRET_KEY_FILE")
    # Reflect on a conversation this long after its last activity (0: never by itself; /reflect
    # still works).
    reflection_idle_s: float = Field(300.0, ge=0.0, validation_alias="CAIRN_REFLECTION_IDLE_S")
    # The transcript one reflection call reads at most (a longer backlog is read in chunks).
    reflection_chunk_tokens: int = Field(
        6000, ge=500, validation_alias="CAIRN_REFLECTION_CHUNK_TOKENS"
    )
    model: ModelSettings = ModelSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    fetch: FetchSettings = FetchSettings()
    # The environment as read at start, for `${NAME}` in MCP servers' headers.
    environ: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)
    helpers: HelperSettings = HelperSettings()

    @property
    def ws_backlog_bytes(self) -> int:
        return self.ws_backlog_mb * 2**20

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, database_url: str | None = None, **fields: Any
    ) -> ServerSettings:
        """The settings from `env` (default: the process environment), with `database_url`
        (the CLI's option) and `fields` (by field name, trusted: tests go below the ranges a
        person may set) winning; SettingsError on a bad variable."""
        source = _environment(env)
        if database_url:
            source["CAIRN_DATABASE_URL"] = database_url
        groups: dict[str, Any] = {
            "model": _validated(ModelSettings, source, {}),
            "embedding": _validated(EmbeddingSettings, source, {}),
            "fetch": _validated(FetchSettings, source, {}),
            "helpers": _validated(HelperSettings, source, {}),
        }
        unknown = set(fields) - set(cls.model_fields)
        if unknown:  # model_copy would keep them silently, and nothing would read them
            raise TypeError(f"ServerSettings has no field {', '.join(sorted(unknown))}")
        return _validated(cls, source, groups).model_copy(update={"environ": source, **fields})


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The variables that are set: blank ones count as unset, surrounding spaces go."""
    source = os.environ if env is None else env
    return {name: value.strip() for name, value in source.items() if value.strip()}


def _validated(cls: type[S], source: dict[str, str], groups: dict[str, Any]) -> S:
    """`cls` from its variables in `source` (others are ignored) and its nested `groups`."""
    known = {name for info in cls.model_fields.values() for name in variable_names(info)}
    variables = {name: value for name, value in source.items() if name in known}
    try:
        return cls(**{**variables, **groups})
    except ValidationError as exc:
        raise SettingsError(setting_problem(exc, cls.model_fields)) from None
