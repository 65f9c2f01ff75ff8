"""The embedded local server: `cairn` with no server configured starts its own.

Owns spawning `cairn-server` on a free loopback port with a SQLite file and a local token.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

STARTUP_TIMEOUT_S = 60.0


class EmbeddedServerError(RuntimeError):
    pass


def local_token(data_dir: Path) -> str:
    """The token this machine's embedded server accepts, created once, readable only by us."""
    path = data_dir / "local-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = "cairn_local_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


class EmbeddedServer:
    """A `cairn-server` child process; restarted by `ensure_running` if it died."""

    def __init__(self, data_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.token = local_token(data_dir)
        self._extra_env = dict(extra_env or {})
        self._process: asyncio.subprocess.Process | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def ensure_running(self) -> str:
        if not self.running:
            await self.start()
        assert self.url is not None
        return self.url

    async def start(self) -> str:
        if importlib.util.find_spec("cairn_server") is None:
            raise EmbeddedServerError(
                "no server is configured (CAIRN_SERVER_URL, CAIRN_TOKEN) and cairn-server is not "
                "installed to start a local one"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "CAIRN_DATABASE_URL": os.environ.get("CAIRN_DATABASE_URL")
            or f"sqlite+aiosqlite:///{self.data_dir / 'cairn.db'}",
            "CAIRN_BOOTSTRAP_TOKEN": self.token,
            **self._extra_env,
        }
        log = (self.data_dir / "server.log").open("ab")  # noqa: SIM115, ASYNC230 - brief, local
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cairn_server",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--announce",
            "--exit-with-parent",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        log.close()
        port = await self._read_port()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _read_port(self) -> int:
        assert self._process is not None and self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), STARTUP_TIMEOUT_S)
        except TimeoutError:
            await self.stop()
            raise EmbeddedServerError(
                f"the local server did not start within {STARTUP_TIMEOUT_S:.0f} s; "
                f"see {self.data_dir / 'server.log'}"
            ) from None
        try:
            return int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            await self.stop()
            raise EmbeddedServerError(
                f"the local server failed to start; see {self.data_dir / 'server.log'}"
            ) from None

    def terminate(self) -> None:
        """Stop the child without an event loop (e.g. after the TUI's loop has closed)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
