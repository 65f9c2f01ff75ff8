"""The FastAPI application: storage opened, runtime recovered, routes mounted.

Owns the app factory and its lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cairn_protocol.redaction import load_detectors
from fastapi import FastAPI

from cairn_server import __version__
from cairn_server.agentfiles.service import AgentFiles
from cairn_server.api import agentfile_routes, memory_routes, routes, ws
from cairn_server.api.activity import Activity, CountConnections
from cairn_server.api.errors import install_error_handlers
from cairn_server.config import ServerSettings
from cairn_server.memory.services import Memory
from cairn_server.providers.catalog import ModelCatalog, ProviderFactory, preload_provider
from cairn_server.runtime.bus import ReplicaLink
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store

DETECTORS_AFTER_S = 2.0


async def list_default_models(preload: asyncio.Future[None], catalog: ModelCatalog) -> None:
    """Once the default model's SDK is loaded, its provider's GET /models, so the first
    welcome (which checks the model against it) does not wait for it; then the rest a run
    would load on first use."""
    await preload
    choice = catalog.resolve(None)
    if choice.model is not None and choice.problem is None:
        await catalog.not_offered(choice.model)
    # Then the secret detectors (~0.3 s of imports), so a run's first memory edit, summary or
    # fetched page does not stall for them; once the first request of a `cairn` that started
    # this server is out, which they would slow.
    await asyncio.sleep(DETECTORS_AFTER_S)
    await asyncio.get_running_loop().run_in_executor(None, load_detectors)


def create_app(
    settings: ServerSettings, provider_factory: ProviderFactory | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = await open_database(settings.database_url, settings.database_pool_size)
        store = Store(database)
        if settings.bootstrap_token:
            await store.add_token(settings.bootstrap_user, settings.bootstrap_token, "bootstrap")
        memory = Memory.open(database, settings.embedding)
        catalog = ModelCatalog(settings.model, provider_factory)
        runtime = Runtime(store, memory, settings, catalog)
        await runtime.load_model_profiles()
        link = None
        if database.dialect == "postgresql":  # replicas: each other's events, who lives
            url = database.engine.url.render_as_string(hide_password=False)
            link = ReplicaLink(
                url, runtime.replica_id, runtime.announced, runtime.catch_up_all, runtime.asked
            )
            await link.start()
            runtime.link, runtime.alive = link, link.alive
        await runtime.recover_after_restart()
        await runtime.seal_stored_headers()
        runtime.reflector.start()
        if link is not None:
            runtime.start_sweeping()
        app.state.runtime = runtime
        if runtime.metrics is not None:
            activity: Activity = app.state.activity
            runtime.metrics.connections.set_function(lambda: activity.open)
        app.state.agent_files = AgentFiles(database)
        default_model = catalog.resolve(None).model
        preload = asyncio.get_running_loop().run_in_executor(None, preload_provider, default_model)
        warm = asyncio.create_task(list_default_models(preload, catalog))
        try:
            yield
        finally:
            warm.cancel()
            await asyncio.gather(warm, return_exceptions=True)
            await preload
            await runtime.shutdown()
            if link is not None:
                await link.stop()
            await memory.aclose()
            await database.close()

    app = FastAPI(title="Cairn server", version=__version__, lifespan=lifespan)
    app.state.activity = Activity()
    app.add_middleware(CountConnections, activity=app.state.activity)
    app.include_router(routes.router)
    app.include_router(routes.unversioned)
    app.include_router(memory_routes.router)
    app.include_router(agentfile_routes.router)
    install_error_handlers(app)
    app.include_router(ws.router)
    return app
