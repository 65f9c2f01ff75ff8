"""REST routes of agent files: import a file as the agent of a codebase, export an agent.

Owns reading the upload with its size limit before anything parses it; the mapping and the
transaction are cairn_server.agentfiles'.
"""

from __future__ import annotations

from typing import Annotated, Any

from cairn_protocol import WorkspaceIdentity
from cairn_protocol.rest import AGENT_FILE_MAX_BYTES, AgentImportReport
from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from cairn_server.agentfiles.schema import AgentFileTooLarge, too_large
from cairn_server.agentfiles.service import AgentFiles
from cairn_server.api.deps import RuntimeDep, StoreDep, UserDep, refuse_nul
from cairn_server.api.routes import owned_agent

router = APIRouter(prefix="/v1", dependencies=[Depends(refuse_nul)])


def get_agent_files(request: Request) -> AgentFiles:
    files: AgentFiles = request.app.state.agent_files
    return files


AgentFilesDep = Annotated[AgentFiles, Depends(get_agent_files)]


class ImportQuery(BaseModel):
    """The codebase the imported agent belongs to (a workspace identity), and `replace`."""

    model_config = ConfigDict(extra="forbid")
    root_commit: str | None = None
    origin: str | None = None
    display_name: str = Field(min_length=1, max_length=200)
    path: str = Field(min_length=1, max_length=4096)
    replace: bool = Field(
        default=False,
        description="Set the codebase's current agent aside (kept, re-keyed) instead of "
        "refusing with 409.",
    )
    raise_limits: bool = Field(
        default=False,
        description="Keep a block that holds more than its limit, with a limit that holds it, "
        "instead of refusing the file with 422.",
    )

    def workspace(self) -> WorkspaceIdentity:
        return WorkspaceIdentity.model_validate(
            self.model_dump(exclude={"replace", "raise_limits"})
        )


@router.post("/agents/import", tags=["agents"], status_code=status.HTTP_201_CREATED)
async def import_agent(
    request: Request,
    runtime: RuntimeDep,
    files: AgentFilesDep,
    user: UserDep,
    query: Annotated[ImportQuery, Query()],
) -> AgentImportReport:
    """Create the codebase's agent from the agent file (.af JSON) in the body, in one
    transaction; the report says what was kept, converted or left out, and why. 422 for a
    file that cannot be imported, 413 over the size limit, 409 when the codebase has an agent
    and `replace` is false."""
    raw = await read_capped(request, AGENT_FILE_MAX_BYTES)
    return await files.import_file(
        raw,
        user,
        query.workspace(),
        runtime.settings,
        replace=query.replace,
        raise_limits=query.raise_limits,
    )


@router.get("/agents/{agent_id}/export", tags=["agents"])
async def export_agent(
    runtime: RuntimeDep, store: StoreDep, files: AgentFilesDep, user: UserDep, agent_id: str
) -> dict[str, Any]:
    """The agent as an agent file (.af): blocks, every conversation's messages, archival
    passages and its model."""
    agent = await owned_agent(store, user, agent_id)
    return await files.export_file(agent.id, runtime.settings)


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused (AgentFileTooLarge) as soon as it is known to pass `limit` bytes:
    by its Content-Length before reading, else while reading."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AgentFileTooLarge(too_large(int(declared)))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AgentFileTooLarge(too_large(len(body)))
    return bytes(body)
