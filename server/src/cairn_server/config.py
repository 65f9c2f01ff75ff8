"""Server settings, read once from the environment.

Owns every CAIRN_* knob of the server and their defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerSettings:
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8765
    step_limit: int = 25
    approval_timeout_s: float = 900.0
    context_budget: int = 100_000
    bootstrap_token: str | None = None
    bootstrap_user: str = "local"
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, database_url: str | None = None
    ) -> ServerSettings:
        from cairn_server.storage.db import default_database_url

        source = dict(os.environ if env is None else env)
        return cls(
            database_url=database_url or source.get("CAIRN_DATABASE_URL") or default_database_url(),
            host=source.get("CAIRN_HOST", "127.0.0.1"),
            port=int(source.get("CAIRN_PORT", "8765")),
            step_limit=int(source.get("CAIRN_STEP_LIMIT", "25")),
            approval_timeout_s=float(source.get("CAIRN_APPROVAL_TIMEOUT_S", "900")),
            context_budget=int(source.get("CAIRN_CONTEXT_BUDGET", "100000")),
            bootstrap_token=source.get("CAIRN_BOOTSTRAP_TOKEN") or None,
            bootstrap_user=source.get("CAIRN_BOOTSTRAP_USER", "local"),
            env=source,
        )
