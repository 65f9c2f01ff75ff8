"""When reflections run: on request (/reflect, REST) and when a conversation has gone idle.

Owns the idle watch (a sweep of the database, so a restart loses nothing), one reflection per
agent at a time, the reflection model chosen by the catalog's tiering, and the background
tasks, which never hold a conversation's lock (a user's run goes on beside a reflection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from cairn_protocol import Usage
from cairn_protocol.rest import ReflectionTrigger

from cairn_server.config import ServerSettings
from cairn_server.errors import CairnServerError
from cairn_server.memory.services import Memory
from cairn_server.providers.catalog import ModelCatalog
from cairn_server.runtime.reflection import ReflectionPass
from cairn_server.storage.models import Agent, Reflection, utcnow
from cairn_server.storage.reflections import Reflections
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.store import Store

log = logging.getLogger(__name__)

# The idle watch looks this often (a quarter of the idle time), within these bounds.
SWEEP_MIN_S = 0.05
SWEEP_MAX_S = 30.0


class ReflectionBusyError(CairnServerError, RuntimeError):
    """The agent has a reflection running; the message says so."""


class Reflector:
    """Shared by every connection of one server process."""

    def __init__(
        self,
        store: Store,
        memory: Memory,
        catalog: ModelCatalog,
        settings: ServerSettings,
        run_going: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.memory = memory
        self.catalog = catalog
        self.settings = settings
        self.reflections = Reflections(store.database)
        self._run_going = run_going  # whether a conversation has a run going now
        self._tasks: set[asyncio.Task[Reflection]] = set()
        self._background: set[asyncio.Task[None]] = set()  # idle reflections started
        self._idle_agents: set[str] = set()  # agents an idle reflection was started for
        self._watch: asyncio.Task[None] | None = None

    async def reflect(
        self, agent: Agent, conversation_id: str, trigger: ReflectionTrigger
    ) -> Reflection:
        """Reflect on the conversation now and return how it ended; ReflectionBusyError while
        the agent has one running. It goes on in the background if the caller leaves."""
        agent_model = self.catalog.resolve(agent.model).model
        model = self.catalog.reflection_model(agent_model)
        row = await self.reflections.claim(agent.id, conversation_id, trigger, model)
        if row is None:
            raise ReflectionBusyError(
                "a reflection is already running for this agent; try again when it has ended"
            )
        provider = self.catalog.reflector(agent_model) if model else None
        if provider is None or model is None:
            why = "no model is configured" if model is None else f"{model} cannot be used"
            # Recorded as tried up to its last message: the idle watch does not come back to
            # it every sweep, only after new messages.
            return await self.reflections.finish(
                row.id,
                "failed",
                usage=Usage(),
                edits=[],
                detail=f"no reflection: {why}",
                attempted_through=await self.reflections.last_message(conversation_id),
            )
        reflection = ReflectionPass(
            store=self.store,
            memory=self.memory,
            reflections=self.reflections,
            provider=provider,
            model=model,
            chunk_tokens=self.settings.reflection_chunk_tokens,
            answer_cap=self.catalog.max_tokens(model),
        )
        task = asyncio.create_task(reflection.run(row), name=row.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    # ------------------------------------------------------------------ the idle watch

    def start(self) -> None:
        """Start watching for idle conversations (CAIRN_REFLECTION_IDLE_S; 0: never)."""
        if self.settings.reflection_idle_s > 0 and self._watch is None:
            self._watch = asyncio.create_task(self._watch_idle(), name="reflection-watch")

    async def sweep(self) -> int:
        """Start a reflection for each conversation idle long enough with something new to
        read (none for an agent reflecting already); how many were started."""
        cutoff = utcnow() - timedelta(seconds=self.settings.reflection_idle_s)
        started: set[str] = set()
        for conversation in await self.reflections.idle_conversations(cutoff):
            agent = await self.store.get_agent(conversation.agent_id)
            if (
                agent is None
                or agent.id in started
                or agent.id in self._idle_agents
                or self._run_going(conversation.id)
            ):
                continue
            started.add(agent.id)
            self._idle_agents.add(agent.id)
            task = asyncio.create_task(self._idle_reflection(agent, conversation.id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return len(started)

    async def _idle_reflection(self, agent: Agent, conversation_id: str) -> None:
        try:
            row = await self.reflect(agent, conversation_id, "idle")
        except ReflectionBusyError:
            return  # the next sweep tries again
        except NotFoundError:
            return  # the conversation went away
        finally:
            self._idle_agents.discard(agent.id)
        log.info(
            "idle reflection %s on %s: %s (%s)", row.id, conversation_id, row.status, row.detail
        )

    async def _watch_idle(self) -> None:
        period = min(SWEEP_MAX_S, max(SWEEP_MIN_S, self.settings.reflection_idle_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception:  # the watch must outlive a failed sweep (a database hiccup)
                log.exception("the idle reflection sweep failed")

    @property
    def active(self) -> int:
        """How many reflections are going now."""
        return len(self._tasks)

    async def settled(self) -> None:
        """Wait for the reflections going now (those idle sweeps started, too) to end."""
        while self._tasks or self._background:
            await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the watch and every reflection (each records that the server shut down)."""
        tasks: list[asyncio.Task[object]] = [*self._tasks, *self._background]
        if self._watch is not None:
            tasks.append(self._watch)
            self._watch = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
