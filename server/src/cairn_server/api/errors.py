"""How domain errors become HTTP answers: one mapping instead of try/except in every route.

Owns the status code and `detail` message of each CairnServerError a request can cause (the
tree of errors is drawn in cairn_server/errors.py); any other error is a 500.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from cairn_server.agentfiles.schema import AgentFileError, AgentFileTooLarge
from cairn_server.agentfiles.service import AgentExistsError
from cairn_server.context.budget import InvalidBudgetError
from cairn_server.memory.blocks import BlockExistsError, StaleBlockError
from cairn_server.memory.edits import MemoryEditError
from cairn_server.providers.catalog import UnknownModelError
from cairn_server.runtime.reflector import ReflectionBusyError
from cairn_server.storage.repository import NotFoundError
from cairn_server.tools.mcp_headers import HeaderKeyError, HeaderReferenceError
from cairn_server.tools.mcp_remote import InvalidServerNameError

# Checked in order: the first matching class decides (subclasses before their bases).
STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, status.HTTP_404_NOT_FOUND),
    (AgentFileTooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (AgentFileError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (AgentExistsError, status.HTTP_409_CONFLICT),
    (ReflectionBusyError, status.HTTP_409_CONFLICT),
    (BlockExistsError, status.HTTP_409_CONFLICT),
    (StaleBlockError, status.HTTP_409_CONFLICT),
    (MemoryEditError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (InvalidBudgetError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (UnknownModelError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (InvalidServerNameError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (HeaderReferenceError, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (HeaderKeyError, status.HTTP_503_SERVICE_UNAVAILABLE),
)


def install_error_handlers(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        status_code = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
        body = {"detail": str(exc)}
        if isinstance(exc, UnknownModelError):  # the client tells its kinds apart by it
            body["code"] = exc.code
        return JSONResponse(body, status_code=status_code)

    for kind, _code in STATUS_OF:
        app.add_exception_handler(kind, handle)
