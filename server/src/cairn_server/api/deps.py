"""Request dependencies of the REST routes: the runtime, the store, the calling user.

Owns bearer-token authentication for HTTP.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cairn_server.memory.services import Memory
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.models import User
from cairn_server.storage.store import Store, TokenRefused

_bearer = HTTPBearer(auto_error=False)


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Store:
    return runtime.store


async def current_user(
    store: Annotated[Store, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    try:
        return await store.authenticate(credentials.credentials if credentials else "")
    except TokenRefused as refused:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(refused), headers={"WWW-Authenticate": "Bearer"}
        ) from None


StoreDep = Annotated[Store, Depends(get_store)]
UserDep = Annotated[User, Depends(current_user)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_memory(runtime: RuntimeDep) -> Memory:
    return runtime.memory


MemoryDep = Annotated[Memory, Depends(get_memory)]
