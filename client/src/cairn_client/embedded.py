"""Starting a local `cairn-server` process: its command, environment, token and port.

Owns spawning it on a free loopback port with a SQLite file and the local token, and the
private child server `cairn demo` keeps; the shared background one is `local_server`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import select
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from cairn_client.errors import CairnError, ExitCode
from cairn_client.private_files import private_dir, private_file

STARTUP_TIMEOUT_S = 60.0


class EmbeddedServerError(CairnError, RuntimeError):
    """The local server did not start; the message says where its log is."""

    exit_code = ExitCode.USAGE  # like a server that cannot be reached: the setup must change


class ServerNotInstalled(CairnError):
    """Only the client is installed, and what was asked needs the server package."""

    exit_code = ExitCode.USAGE


def require_server(needed_for: str) -> None:
    """ServerNotInstalled, saying what needs it, unless the cairn_server package is importable."""
    if importlib.util.find_spec("cairn_server") is None:
        raise ServerNotInstalled(
            f"{needed_for} needs the cairn-server package, which is not installed here"
        )


def local_token(data_dir: Path) -> str:
    """The token this machine's embedded server accepts, created once, readable only by us."""
    path = private_dir(data_dir) / "local-token"
    if path.exists():
        return path.read_text().strip()
    token = "cairn_local_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token


def server_environment(
    environ: Mapping[str, str], data_dir: Path, token: str, database_url: str | None
) -> dict[str, str]:
    """What a local server starts with: the client's environment snapshot, its database (a
    SQLite file in the data folder unless set) and the token it accepts."""
    return {
        **environ,
        "CAIRN_DATABASE_URL": database_url
        or environ.get("CAIRN_DATABASE_URL")
        or f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}",
        "CAIRN_BOOTSTRAP_TOKEN": token,
    }


def start_server_process(
    data_dir: Path, env: Mapping[str, str], options: list[str]
) -> subprocess.Popen[bytes]:
    """`cairn-server serve` on a free loopback port in its own session, logging to the data
    folder's server.log; `announced_port` says where it listens."""
    require_server(
        "no server is configured (set CAIRN_SERVER_URL and CAIRN_TOKEN), and starting a local one"
    )
    private_dir(data_dir)
    command = [sys.executable, "-m", "cairn_server", "serve", "--host", "127.0.0.1"]
    command += ["--port", "0", "--announce", *options]
    with private_file(data_dir / "server.log").open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=dict(env),
            cwd=data_dir,  # a server that outlives this `cairn` holds no repository open
            start_new_session=True,
        )


def announced_port(process: subprocess.Popen[bytes], data_dir: Path) -> int:
    """The port `process` says it listens on once it is ready; EmbeddedServerError if it
    fails or takes too long (the caller stops it)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
    line = process.stdout.readline() if ready else b""
    process.stdout.close()  # nothing more comes: a server left running never blocks on it
    try:
        return int(json.loads(line)["port"])
    except (ValueError, KeyError, TypeError):
        problem = "did not start in time" if not ready else "failed to start"
        raise EmbeddedServerError(
            f"the local server {problem}; see {data_dir / 'server.log'}"
        ) from None


class EmbeddedServer:
    """A private `cairn-server` child process that ends with this `cairn` (`cairn demo`,
    tests); restarted by `ensure_running` if it died. Others share `local_server`'s."""

    def __init__(
        self,
        data_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        *,
        environ: Mapping[str, str],
        database_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.token = local_token(data_dir)
        self._extra_env = dict(extra_env or {})
        # The child starts from the client's environment (the settings' snapshot).
        self._environ = dict(environ)
        self._database_url = database_url
        self._process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def ensure_running(self) -> str:
        """The server's URL, spawning it (again) if it is not running."""
        if not self.running:
            self.url = None
            self.spawn()
        if self.url is None:
            port = await asyncio.to_thread(self._read_port)
            self.url = f"http://127.0.0.1:{port}"
        return self.url

    def spawn(self) -> None:
        """Start the child without waiting for it, so it boots while the client starts up."""
        if self.running:
            return
        env = server_environment(self._environ, self.data_dir, self.token, self._database_url)
        self._process = start_server_process(
            self.data_dir,
            {**env, **self._extra_env},
            ["--exit-with-parent", str(os.getpid())],
        )
        self.url = None

    def _read_port(self) -> int:
        process = self._process
        assert process is not None
        try:
            return announced_port(process, self.data_dir)
        except EmbeddedServerError:
            self.terminate()
            raise

    def terminate(self) -> None:
        """Ask the child to stop; no event loop needed (e.g. after the TUI's loop closed)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    async def stop(self) -> None:
        """Stop the child and wait for it."""
        process = self._process
        self.terminate()
        if process is None:
            return
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
