"""Request dependencies of the REST routes: the runtime, the store, the calling user.

Owns bearer-token authentication for HTTP, and refusing NUL in path and query parameters.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cairn_server.memory.services import Memory
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.models import User
from cairn_server.storage.store import Store, TokenRefused

_bearer = HTTPBearer(auto_error=False)


def refuse_nul(request: Request) -> None:
    """A path or query parameter holding NUL is refused (422): nothing Cairn names has one.

    Every REST router depends on this; text in request bodies may hold NUL (it is stored)."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    errors = [
        {
            "type": "string_pattern_mismatch",
            "loc": (where, name),
            "msg": "must not contain NUL (\\u0000)",
            "input": value,
        }
        for where, name, value in params
        if isinstance(value, str) and "\x00" in value
    ]
    if errors:
        raise RequestValidationError(errors)


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


async def optional_user(
    store: Annotated[Store, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    """The caller when its token is valid, else None (for routes that answer anyone)."""
    if credentials is None:
        return None
    try:
        return await store.authenticate(credentials.credentials)
    except TokenRefused:
        return None


StoreDep = Annotated[Store, Depends(get_store)]
UserDep = Annotated[User, Depends(current_user)]
OptionalUserDep = Annotated[User | None, Depends(optional_user)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_memory(runtime: RuntimeDep) -> Memory:
    return runtime.memory


MemoryDep = Annotated[Memory, Depends(get_memory)]
