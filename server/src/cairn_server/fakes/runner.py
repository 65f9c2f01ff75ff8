"""Running the fake model server: in a background thread for tests, or in the foreground.

Owns the loopback socket, the uvicorn server around the fake app, and their lifetime.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from cairn_server.fakes.app import FakeModelState, RecordedRequest, RequestLog, create_app
from cairn_server.fakes.script import Script

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 5.0


def bind_loopback(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: a free one), ready before uvicorn runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((LOOPBACK, port))
    sock.listen(128)
    return sock


def make_uvicorn_server(state: FakeModelState) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


class FakeModelServer:
    """The fake OpenAI + Anthropic server on a free loopback port, in a background thread.

    Use as a context manager (`with FakeModelServer(script) as fake:`), also inside async
    tests: the server runs on its own thread and event loop.
    """

    def __init__(
        self, script: Script | None = None, *, record_path: Path | None = None, port: int = 0
    ) -> None:
        self._state = FakeModelState(script or Script(), RequestLog(record_path))
        self._socket = bind_loopback(port)
        self.port: int = self._socket.getsockname()[1]
        self.openai_base_url = f"http://{LOOPBACK}:{self.port}/v1"
        self.anthropic_base_url = f"http://{LOOPBACK}:{self.port}"
        self._server = make_uvicorn_server(self._state)
        self._thread: threading.Thread | None = None

    @property
    def script(self) -> Script:
        return self._state.script

    def set_script(self, script: Script) -> None:
        """Answer the following requests from `script` (the request record is kept)."""
        self._state.set_script(script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        return self._state.log.snapshot()

    @property
    def answer_times(self) -> list[float]:
        """perf_counter() when each streamed answer was fully sent, oldest first."""
        return list(self._state.log.answer_times)

    def clear_requests(self) -> None:
        self._state.log.clear()

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"fake-model-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake model server did not start on port {self.port}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving; in-flight answers get a moment to finish, then are cut."""
        if self._thread is None:
            self._socket.close()
            return
        self._server.should_exit = True
        self._thread.join(timeout=3)
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


def serve_forever(script: Script, *, sock: socket.socket, record_path: Path | None) -> None:
    """Serve on `sock` in this thread until SIGINT/SIGTERM."""
    state = FakeModelState(script, RequestLog(record_path))
    make_uvicorn_server(state).run(sockets=[sock])
