"""The local server every `cairn` of a user shares: one per data folder, in the background.

Owns its state file (port, token, pid, version; 0600), the lock two starting `cairn` share,
checking it answers with this install's version, restarting it after a crash or an upgrade,
and `cairn server status|stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, NamedTuple

from cairn_client.embedded import (
    announced_port,
    local_token,
    require_server,
    server_environment,
    start_server_process,
)
from cairn_client.private_files import private_dir, private_file

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
HEALTH_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 10.0
# Variables only the client reads: a change in them is no reason to restart the server.
_CLIENT_ONLY = frozenset({"CAIRN_SERVER_URL", "CAIRN_TOKEN", "CAIRN_DATA_DIR"})
_SERVER_PREFIXES = ("CAIRN_", "OPENAI_", "ANTHROPIC_")

Notify = Callable[[str], None]


@dataclass(frozen=True)
class ServerState:
    """What the state file says about the running local server."""

    pid: int
    port: int
    token: str
    version: str
    data_dir: str
    started_at: float
    # Each server setting's variable → a digest of its value (never the value itself).
    settings: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def read_state(data_dir: Path) -> ServerState | None:
    """The state file's contents, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads((data_dir / STATE_FILE).read_text())
        return ServerState(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _write_state(data_dir: Path, state: ServerState) -> None:
    """Replace the state file at once (readers never see half of it)."""
    temporary = private_file(data_dir / f".{STATE_FILE}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(state)))
    temporary.replace(data_dir / STATE_FILE)


def installed_version() -> str:
    """The version of the cairn-server package this `cairn` would start."""
    require_server("starting the local server")
    from importlib.metadata import version

    return version("cairn-server")


def answered_version(url: str, token: str, timeout: float = HEALTH_TIMEOUT_S) -> str | None:
    """The version the server at `url` reports on /v1/health to the holder of `token`, or None
    if it does not answer (or does not know the token: then it is not ours to use)."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=timeout)
    try:
        connection.request("GET", "/v1/health", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        if response.status != 200:
            return None
        return str(json.loads(response.read())["version"])
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def process_running(pid: int) -> bool:
    """Whether `pid` is a live process (a child of ours that ended is reaped, not counted)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # an ended process whose parent has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def server_running(state: ServerState) -> bool:
    """Whether the state's pid is alive and is still its server, not a process that was given
    the same pid since (which must never be stopped)."""
    if not process_running(state.pid):
        return False
    try:
        argv = Path(f"/proc/{state.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: the pid is all there is to go by
    return str(Path(state.data_dir) / STATE_FILE).encode() in argv


def settings_digest(environ: Mapping[str, str]) -> dict[str, str]:
    """The server settings in `environ` (CAIRN_*, OPENAI_*, ANTHROPIC_*), each value digested."""
    return {
        name: hashlib.sha256(value.encode()).hexdigest()[:16]
        for name, value in sorted(environ.items())
        if name.startswith(_SERVER_PREFIXES)
        and name not in _CLIENT_ONLY
        and not name.startswith("CAIRN_TEST_")
    }


class _Lock:
    """An exclusive lock on the data folder's lock file, held from `acquire` to `release`
    (or until this process ends), so two `cairn` starting together find or start one server."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / LOCK_FILE
        self._handle: IO[bytes] | None = None

    def acquire(self) -> None:
        if self._handle is None:
            handle = private_file(self._path).open("rb")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()  # closing drops the lock


class _Pending(NamedTuple):
    """A server started by this `cairn` whose port is not known yet."""

    process: subprocess.Popen[bytes]
    version: str
    started_at: float


class LocalServer:
    """The shared local server seen from one `cairn`: `find_or_start` at launch (quick when it
    is up), `ensure_running` before each connection (restarting it if it went away)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        environ: Mapping[str, str],
        database_url: str | None,
        idle_exit_s: float,
        notify: Notify | None,
    ) -> None:
        self.data_dir = private_dir(data_dir)
        self.token = local_token(data_dir)
        self._environ = dict(environ)
        self._database_url = database_url
        self._idle_exit_s = idle_exit_s
        self.notify: Notify = notify or (lambda line: None)  # a front end may replace it
        self._lock = _Lock(data_dir)
        self._pending: _Pending | None = None  # started, its port not read yet
        self.url: str | None = None
        self._checked = False  # `url` answered just now: the first connection need not ask

    def find_or_start(self) -> None:
        """Use the running server if it answers with this version, else start one (saying
        why, in one line, when one was there before); the port is read by `ensure_running`."""
        self._lock.acquire()
        try:
            wanted = installed_version()
            state = read_state(self.data_dir)
            if state is not None:
                running = server_running(state)
                # A busy machine may be slow to answer: asked twice before it counts as gone.
                version = (
                    answered_version(state.url, state.token)
                    or answered_version(state.url, state.token, 5.0)
                    if running
                    else None
                )
                if version == wanted:
                    self._use(state)
                    return
                if version is not None:
                    self.notify(
                        f"the local server was version {version}; restarting it as {wanted}"
                    )
                    stop_process(state.pid)
                else:
                    if running:
                        stop_process(state.pid)
                    self.notify(
                        f"the local server (pid {state.pid}) had stopped; started a new one"
                    )
                (self.data_dir / STATE_FILE).unlink(missing_ok=True)
            self._spawn(wanted)
        except BaseException:
            self._lock.release()
            raise

    def _use(self, state: ServerState) -> None:
        self._lock.release()
        self.url, self._checked = state.url, True
        changed = sorted(
            name
            for name in state.settings.keys() | settings_digest(self._environ).keys()
            if state.settings.get(name) != settings_digest(self._environ).get(name)
        )
        if changed:
            self.notify(
                f"the local server (pid {state.pid}) runs with other settings "
                f"({', '.join(changed)}); `cairn server stop` to apply yours"
            )

    def _spawn(self, version: str) -> None:
        env = server_environment(self._environ, self.data_dir, self.token, self._database_url)
        env["CAIRN_IDLE_EXIT_S"] = f"{self._idle_exit_s:g}"
        process = start_server_process(
            self.data_dir, env, ["--state-file", str(self.data_dir / STATE_FILE)]
        )
        self._pending = _Pending(process, version, time.time())
        self.url = None

    async def ensure_running(self) -> str:
        """The server's URL, once it answers: starting it if `find_or_start` had to, or
        again if it went away since."""
        if self.url is not None and self._checked:
            self._checked = False
            return self.url
        if self.url is not None:
            answered = await asyncio.to_thread(
                answered_version, self.url, self.token, HEALTH_TIMEOUT_S
            )
            if answered is not None:
                return self.url
        if self._pending is None:
            await asyncio.to_thread(self.find_or_start)
            if self.url is not None:
                self._checked = False
                return self.url
        return await asyncio.to_thread(self._finish_start)

    def _finish_start(self) -> str:
        """Wait for the started server's port, record it in the state file, drop the lock."""
        assert self._pending is not None
        process, version, started_at = self._pending
        self._pending = None
        try:
            port = announced_port(process, self.data_dir)
        except BaseException:
            process.kill()
            self._lock.release()
            raise
        state = ServerState(
            pid=process.pid,
            port=port,
            token=self.token,
            version=version,
            data_dir=str(self.data_dir),
            started_at=started_at,
            settings=settings_digest(self._environ),
        )
        _write_state(self.data_dir, state)
        self._lock.release()
        self.url = state.url
        return self.url

    def abandon(self) -> None:
        """At exit: a server started but never waited for is stopped, the lock dropped."""
        if self._pending is not None:
            self._pending.process.kill()
            self._pending = None
        self._lock.release()


def stop_process(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM `pid` and wait for it to end; SIGKILL if it has not within `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_running(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def status_lines(data_dir: Path) -> list[str]:
    """`cairn server status`: whether the local server runs, and its pid, address, version,
    data folder and uptime."""
    state = read_state(data_dir)
    if state is None or not server_running(state):
        return ["local server: not running", f"data dir:     {data_dir}"]
    version = answered_version(state.url, state.token)
    answering = "running" if version is not None else "not answering"
    return [
        f"local server: {answering} (pid {state.pid})",
        f"address:      {state.url}",
        f"version:      {version or state.version}",
        f"data dir:     {state.data_dir}",
        f"uptime:       {_duration(time.time() - state.started_at)}",
    ]


def stop_local_server(data_dir: Path) -> str:
    """`cairn server stop`: stop the local server cleanly; what happened, in one line."""
    lock = _Lock(private_dir(data_dir))
    lock.acquire()
    try:
        state = read_state(data_dir)
        if state is None or not server_running(state):
            (data_dir / STATE_FILE).unlink(missing_ok=True)
            return "the local server is not running"
        stop_process(state.pid)
        (data_dir / STATE_FILE).unlink(missing_ok=True)
        return f"stopped the local server (pid {state.pid})"
    finally:
        lock.release()


def stop_local_servers_under(root: Path) -> None:
    """Stop the local server of every data folder under `root` (tests and benchmarks that
    made data folders in a temporary one, before removing it)."""
    for state_file in root.rglob(STATE_FILE):
        stop_local_server(state_file.parent)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
