"""Server settings, read once from the environment.

Owns every CAIRN_* knob of the server and their defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from cairn_server.errors import CairnServerError

# Below this, the instructions and tool schemas alone would not fit a request.
MIN_BUDGET = 2000
N = TypeVar("N", int, float)


class SettingsError(CairnServerError, ValueError):
    """A CAIRN_* variable Cairn cannot use; the message names it and what it expects."""


@dataclass(frozen=True)
class _Reader:
    source: Mapping[str, str]

    def number(self, name: str, default: N, kind: type[N], low: N, *, high: N | None = None) -> N:
        raw = self.source.get(name, "").strip()
        if not raw:
            return default
        expected = f"a{'n integer' if kind is int else ' number'} from {low}"
        expected += f" to {high}" if high is not None else " up"
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {expected}") from None
        if value < low or (high is not None and value > high):
            raise SettingsError(f"{name}={raw!r} is out of range: expected {expected}")
        return value


@dataclass(frozen=True)
class ServerSettings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8765
    step_limit: int = 25
    approval_timeout_s: float = 900.0
    # How long a withdrawn call's executor has to say what happened (e.g. a command it killed).
    withdraw_grace_s: float = 5.0
    context_budget: int = 100_000
    compaction_threshold: float = 0.8
    summary_model: str | None = None
    run_token_limit: int = 2_000_000
    run_cost_limit_usd: float = 5.0
    repeat_limit: int = 3
    # Unsent events a websocket client may fall behind by before it is closed (4413).
    ws_backlog_bytes: int = 16 * 2**20
    bootstrap_token: str | None = None
    bootstrap_user: str = "local"
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, database_url: str | None = None
    ) -> ServerSettings:
        from cairn_server.storage.db import default_database_url

        source = dict(os.environ if env is None else env)
        read = _Reader(source)
        return cls(
            database_url=database_url or source.get("CAIRN_DATABASE_URL") or default_database_url(),
            host=source.get("CAIRN_HOST", "127.0.0.1"),
            port=read.number("CAIRN_PORT", 8765, int, 0),
            step_limit=read.number("CAIRN_STEP_LIMIT", 25, int, 1),
            approval_timeout_s=read.number("CAIRN_APPROVAL_TIMEOUT_S", 900.0, float, 1.0),
            withdraw_grace_s=read.number("CAIRN_WITHDRAW_GRACE_S", 5.0, float, 0.0),
            context_budget=read.number("CAIRN_CONTEXT_BUDGET", 100_000, int, MIN_BUDGET),
            compaction_threshold=read.number(
                "CAIRN_COMPACTION_THRESHOLD", 0.8, float, 0.1, high=1.0
            ),
            summary_model=source.get("CAIRN_SUMMARY_MODEL") or None,
            run_token_limit=read.number("CAIRN_RUN_TOKEN_LIMIT", 2_000_000, int, 1),
            run_cost_limit_usd=read.number("CAIRN_RUN_COST_LIMIT_USD", 5.0, float, 0.0),
            repeat_limit=read.number("CAIRN_REPEAT_LIMIT", 3, int, 1),
            ws_backlog_bytes=read.number("CAIRN_WS_BACKLOG_MB", 16, int, 1) * 2**20,
            bootstrap_token=source.get("CAIRN_BOOTSTRAP_TOKEN") or None,
            bootstrap_user=source.get("CAIRN_BOOTSTRAP_USER", "local"),
            env=source,
        )
