"""How busy the server is: open connections (HTTP and websocket) and when the last one ended.

Owns the ASGI middleware that counts them, read by the CLI's idle exit with the runtime's runs.
"""

from __future__ import annotations

import time
from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any


class Activity:
    """Counts the connections in progress; `quiet_for` is how long none has been open."""

    def __init__(self) -> None:
        self.open = 0
        self._last_seen = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since a connection was last open (0 while one is)."""
        return 0.0 if self.open else time.monotonic() - self._last_seen

    def busy(self) -> None:
        """Count as activity now without a connection (e.g. a run is going)."""
        self._last_seen = time.monotonic()


class CountConnections:
    """ASGI middleware: every HTTP request and websocket counts as open in `activity` while
    it lasts."""

    def __init__(self, app: Any, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.activity.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.activity.open -= 1
            self.activity.busy()
