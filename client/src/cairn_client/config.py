"""Client settings from the environment: which server, which token, where data lives.

Owns CAIRN_SERVER_URL, CAIRN_TOKEN and the client's data folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs


@dataclass(frozen=True)
class ClientSettings:
    server_url: str | None
    token: str | None
    data_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        source = os.environ if env is None else env
        data_dir = source.get("CAIRN_DATA_DIR") or platformdirs.user_data_dir("cairn")
        return cls(
            server_url=source.get("CAIRN_SERVER_URL") or None,
            token=source.get("CAIRN_TOKEN") or None,
            data_dir=Path(data_dir),
        )


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
