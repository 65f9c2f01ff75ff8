"""How server processes on one PostgreSQL database hear of each other and tell the living
from the gone.

Owns each process's one link connection: LISTEN on the events channel (Store.append_event
notifies at commit; each announcement names a conversation and a seq) and on the control
channel (a replica asks the one running a conversation's run to cancel it), and an advisory lock
keyed by the process's replica id, held while the process lives (PostgreSQL drops it with
the connection, so a killed process lets go of it at once). The link is opened again after a
drop. On SQLite (one process) there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import make_url

from cairn_server.storage.store import CONTROL_CHANNEL, EVENTS_CHANNEL

log = logging.getLogger(__name__)

Announced = Callable[[str, int], Awaitable[None]]
Asked = Callable[[dict[str, str]], Awaitable[None]]

RECONNECT_S = (0.5, 1.0, 2.0, 5.0)  # waits between attempts after the connection dropped
APPLICATION_NAME = "cairn-events"  # the link connection, as pg_stat_activity shows it


def lock_key(replica_id: str) -> int:
    """The advisory lock (a signed 64-bit key) a replica holds while it lives."""
    return int.from_bytes(
        hashlib.blake2b(replica_id.encode(), digest_size=8).digest(), "big", signed=True
    )


class ReplicaLink:
    """While running: calls `announced(conversation_id, seq)` for each event any process
    commits (its own included), and `resumed()` when it listens again after a drop (what was
    announced meanwhile is lost: the events table has it); holds `replica_id`'s lock; answers
    whether another replica lives. `start` returns once it listens."""

    def __init__(
        self,
        database_url: str,
        replica_id: str,
        announced: Announced,
        resumed: Callable[[], Awaitable[None]],
        asked: Asked,
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self.replica_id = replica_id
        self._announced = announced
        self._resumed = resumed
        self._asked = asked
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._connection: Any = None  # asyncpg's, while connected
        self._queries = asyncio.Lock()  # one query at a time on the connection

    async def start(self) -> None:
        linked = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._link(linked), name="replica-link")
        await asyncio.shield(linked)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    @property
    def linked(self) -> bool:
        """Whether the link is up now (announcements heard, this process's lock held)."""
        return self._connection is not None

    async def alive(self, replica_id: str | None) -> bool:
        """Whether the process `replica_id` still holds its lock; this process is alive, one
        with no id (a run from before owners were kept) is not. When the link is down it
        cannot tell, and says alive: nothing is ended on a guess."""
        if replica_id == self.replica_id:
            return True
        if replica_id is None:
            return False
        async with self._queries:
            connection = self._connection
            if connection is None:
                return True
            key = lock_key(replica_id)
            try:
                if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    return True
                await connection.execute("SELECT pg_advisory_unlock($1)", key)
            except Exception as exc:  # the link dropped meanwhile
                log.warning("replica link: cannot tell whether %s lives (%s)", replica_id, exc)
                return True
            return False

    async def _link(self, linked: asyncio.Future[None]) -> None:
        import asyncpg  # type: ignore[import-untyped]  # the driver SQLAlchemy uses

        attempt = 0
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": APPLICATION_NAME}
                )
            except (OSError, asyncpg.PostgresError) as exc:
                if not linked.done():
                    linked.set_exception(exc)
                    return
                delay = RECONNECT_S[min(attempt, len(RECONNECT_S) - 1)]
                log.warning("replica link: cannot connect (%s); again in %ss", exc, delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            connection.add_termination_listener(functools.partial(_settle, lost))
            try:
                await connection.execute("SELECT pg_advisory_lock($1)", lock_key(self.replica_id))
                await connection.add_listener(EVENTS_CHANNEL, self._on_notification)
                await connection.add_listener(CONTROL_CHANNEL, self._on_request)
                self._connection = connection
                attempt = 0
                if not linked.done():
                    linked.set_result(None)
                else:
                    log.warning("replica link: linked again")
                    self._track(self._resumed())
                await lost
                log.warning("replica link: the connection dropped")
            finally:
                self._connection = None
                with contextlib.suppress(Exception):
                    await connection.close()

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        conversation_id, _, seq = payload.rpartition(":")
        if not conversation_id or not seq.isdigit():
            return
        self._track(self._announced(conversation_id, int(seq)))

    async def ask(self, request: dict[str, str]) -> bool:
        """Send `request` to every replica (this one included: it ignores what is not its);
        False when the link is down, so it could not be sent."""
        async with self._queries:
            connection = self._connection
            if connection is None:
                return False
            try:
                await connection.execute(
                    "SELECT pg_notify($1, $2)", CONTROL_CHANNEL, json.dumps(request)
                )
            except Exception as exc:  # the link dropped meanwhile
                log.warning("replica link: cannot send %s (%s)", request, exc)
                return False
            return True

    def _on_request(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            request = json.loads(payload)
        except ValueError:
            return
        if isinstance(request, dict) and all(isinstance(v, str) for v in request.values()):
            self._track(self._asked(request))

    def _track(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(_logged(work))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


async def _logged(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:  # one conversation's delivery must not stop the others'
        log.exception("delivering announced events failed")


def _settle(future: asyncio.Future[None], _connection: object = None) -> None:
    if not future.done():
        future.set_result(None)
