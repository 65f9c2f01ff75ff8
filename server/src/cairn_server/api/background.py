"""Serving an ASGI app from a background thread of this process, on a loopback port.

Owns in-process serving for tests, benchmarks and the fake model (the CLI serves in the
foreground).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import uvicorn

from cairn_server.config import ServerSettings

if TYPE_CHECKING:  # the runtime pulls in the whole server; the fake model needs none of it
    from cairn_server.providers.catalog import ProviderFactory

STARTUP_TIMEOUT_S = 20.0


def bind_listening(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: a free one), ready before uvicorn runs."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn leaves Nagle on for sockets it is handed: small frames would wait ~40 ms for ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class ThreadedServer:
    """uvicorn on its own thread and event loop: `with ThreadedServer(app) as s: s.url`."""

    def __init__(self, app: Any, *, port: int = 0, **uvicorn_options: Any) -> None:
        self._socket = bind_listening(port=port)
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"log_level": "warning", "loop": "asyncio", "timeout_graceful_shutdown": 1}
        self._server = uvicorn.Server(uvicorn.Config(app, **{**options, **uvicorn_options}))
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {self.port} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving; in-flight work gets a moment to finish, then is cut."""
        if self._thread is None:
            self._socket.close()
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=3)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class BackgroundServer(ThreadedServer):
    """A Cairn server in this process: `with BackgroundServer(settings) as server: server.url`."""

    def __init__(
        self, settings: ServerSettings, provider_factory: ProviderFactory | None = None
    ) -> None:
        from cairn_server.api.app import create_app

        self.app = create_app(settings, provider_factory)
        super().__init__(self.app)
