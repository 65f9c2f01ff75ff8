"""REST routes: thin reads of agents, conversations, messages and runs.

Owns the HTTP surface; the logic lives in the store and the runtime, the shapes it returns in
cairn_protocol.rest.
"""

from __future__ import annotations

from cairn_protocol import WorkspaceIdentity
from cairn_protocol.mcp import SERVER_NAME
from cairn_protocol.rest import (
    AgentPublic,
    ApprovalPublic,
    ConversationPublic,
    McpServerPublic,
    MessagePublic,
    ReflectionPublic,
    RunPublic,
    RunStepPublic,
)
from fastapi import APIRouter, Depends, Response, status
from fastapi.responses import JSONResponse

from cairn_server import __version__
from cairn_server.api.deps import OptionalUserDep, RuntimeDep, StoreDep, UserDep, refuse_nul
from cairn_server.api.schemas import AgentUpdate, McpServerBody, approval_public, public
from cairn_server.context.budget import check_budget
from cairn_server.providers.catalog import check_model
from cairn_server.runtime.runtime import Runtime
from cairn_server.storage.models import Agent, AgentMcpServer, Conversation, Run
from cairn_server.storage.repository import NotFoundError, describe_failure
from cairn_server.tools.mcp_headers import McpHeaders
from cairn_server.tools.mcp_remote import InvalidServerNameError, Listing

router = APIRouter(prefix="/v1", dependencies=[Depends(refuse_nul)])


@router.get("/health", tags=["meta"])
async def health(caller: OptionalUserDep) -> dict[str, str]:
    """Answers without a token; the version only to a caller whose token is valid (the client
    checks it before using a server; strangers learn nothing they could aim at)."""
    if caller is None:
        return {"status": "ok"}
    return {"status": "ok", "version": __version__}


@router.get(
    "/ready",
    tags=["meta"],
    responses={503: {"description": "the database, or the link to the other replicas, is down"}},
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """Whether this process can serve now (for a load balancer): its database answers and,
    on PostgreSQL, its link to the other replicas is up. No token needed."""
    problem = None
    try:
        await runtime.store.ping()
    except Exception as exc:  # any failure: not ready, and why in one line
        problem = f"the database does not answer ({describe_failure(exc)})"
    if problem is None and runtime.link is not None and not runtime.link.linked:
        problem = "the link to the other replicas is down (reconnecting)"
    if problem is not None:
        return JSONResponse({"status": "not ready", "detail": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


# Routes outside /v1, where the tools that read them look.
unversioned = APIRouter()


@unversioned.get(
    "/metrics",
    tags=["meta"],
    response_class=Response,
    responses={404: {"description": "metrics are off (CAIRN_METRICS)"}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus metrics, when CAIRN_METRICS is on (docs/deploy.md); no token needed."""
    if runtime.metrics is None:
        return JSONResponse(
            {"detail": "metrics are off; set CAIRN_METRICS=1 to serve them"}, status_code=404
        )
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)


def agent_public(agent: Agent, runtime: Runtime) -> AgentPublic:
    """The agent as the client reads it, with the model the server runs when it has none."""
    default_model = runtime.catalog.resolve(None).model
    return AgentPublic.model_validate({**agent.model_dump(), "default_model": default_model})


@router.get("/agents", tags=["agents"])
async def list_agents(runtime: RuntimeDep, store: StoreDep, user: UserDep) -> list[AgentPublic]:
    return [agent_public(agent, runtime) for agent in await store.list_agents(user.id)]


@router.post("/agents", tags=["agents"])
async def ensure_agent(
    runtime: RuntimeDep, user: UserDep, workspace: WorkspaceIdentity
) -> AgentPublic:
    """The caller's agent for a codebase, created (with default blocks) on first use."""
    return agent_public(await runtime.agent_for(user.id, workspace), runtime)


@router.get("/agents/{agent_id}", tags=["agents"])
async def get_agent(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, agent_id: str
) -> AgentPublic:
    return agent_public(await owned_agent(store, user, agent_id), runtime)


@router.patch("/agents/{agent_id}", tags=["agents"])
async def update_agent(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, agent_id: str, update: AgentUpdate
) -> AgentPublic:
    """Set the agent's model (422 naming what this server runs when it cannot run it, or,
    code "model_not_offered", the closest models its provider lists when that list lacks it)
    and its context budget (422 when its model's window cannot hold it): only the fields sent."""
    agent = await owned_agent(store, user, agent_id)
    given = update.model_fields_set
    if "model" in given:
        wanted = (update.model or "").strip()
        model = check_model(wanted, runtime.catalog.settings) if wanted else None
        if model is not None:
            await runtime.catalog.check_offered(model)
        agent = await store.set_agent_model(agent.id, model)
    if "context_budget" in given:
        if update.context_budget is not None:
            check_budget(update.context_budget, runtime.catalog.resolve(agent.model).model)
        agent = await store.set_agent_budget(agent.id, update.context_budget)
    return agent_public(agent, runtime)


@router.get("/agents/{agent_id}/mcp-servers", tags=["agents"])
async def list_mcp_servers(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, agent_id: str
) -> list[McpServerPublic]:
    """The agent's streamable-HTTP MCP servers, each with the tools it lists now (or why it
    lists none)."""
    agent = await owned_agent(store, user, agent_id)
    rows = await store.mcp_servers(agent.id)
    remote = runtime.remote_mcp
    listings = await remote.listings([remote.server(row) for row in rows])
    return [mcp_server_public(row, listings[row.name], remote.headers) for row in rows]


@router.put("/agents/{agent_id}/mcp-servers/{name}", tags=["agents"])
async def put_mcp_server(
    runtime: RuntimeDep,
    store: StoreDep,
    user: UserDep,
    agent_id: str,
    name: str,
    body: McpServerBody,
) -> McpServerPublic:
    """Add (or replace) the agent's MCP server `name`; its tools count from the next message
    on, named mcp__<name>__<tool>."""
    agent = await owned_agent(store, user, agent_id)
    if not SERVER_NAME.fullmatch(name):
        raise InvalidServerNameError(
            f"{name!r}: a server's name is up to 30 letters, digits, '-' or single '_'"
        )
    remote = runtime.remote_mcp
    sealed = remote.headers.seal(body.headers)  # `${NAME}` missing: 422 now, not at a call
    row = await store.put_mcp_server(agent.id, name, body.url, sealed, body.timeout_s)
    listings = await remote.listings([remote.server(row)])
    return mcp_server_public(row, listings[row.name], remote.headers)


@router.delete("/agents/{agent_id}/mcp-servers/{name}", tags=["agents"], status_code=204)
async def delete_mcp_server(store: StoreDep, user: UserDep, agent_id: str, name: str) -> Response:
    agent = await owned_agent(store, user, agent_id)
    if not await store.delete_mcp_server(agent.id, name):
        raise NotFoundError(f"agent {agent_id} has no MCP server {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def mcp_server_public(
    row: AgentMcpServer, listing: Listing, headers: McpHeaders
) -> McpServerPublic:
    return McpServerPublic(
        name=row.name,
        url=row.url,
        timeout_s=row.timeout_s,
        header_names=sorted(row.headers),
        headers=headers.masks(row.name, row.headers),
        tools=[tool.spec.name for tool in listing.tools],
        problem=listing.problem,
    )


async def owned_agent(store: StoreDep, user: UserDep, agent_id: str) -> Agent:
    agent = await store.get_agent(agent_id)
    if agent is None or agent.user_id != user.id:
        raise NotFoundError(f"no agent {agent_id}")
    return agent


async def owned_conversation(store: StoreDep, user: UserDep, conversation_id: str) -> Conversation:
    conversation = await store.get_conversation(conversation_id)
    if conversation is None:
        raise NotFoundError(f"no conversation {conversation_id}")
    await owned_agent(store, user, conversation.agent_id)
    return conversation


@router.get("/agents/{agent_id}/conversations", tags=["conversations"])
async def list_conversations(
    store: StoreDep, user: UserDep, agent_id: str
) -> list[ConversationPublic]:
    """The agent's conversations, most recent activity first, with their message counts."""
    agent = await owned_agent(store, user, agent_id)
    conversations = await store.list_conversations(agent.id)
    counts = await store.message_counts([conversation.id for conversation in conversations])
    return [
        ConversationPublic.model_validate(
            {**conversation.model_dump(), "message_count": counts[conversation.id]}
        )
        for conversation in conversations
    ]


@router.get("/conversations/{conversation_id}/messages", tags=["conversations"])
async def list_messages(
    store: StoreDep, user: UserDep, conversation_id: str
) -> list[MessagePublic]:
    conversation = await owned_conversation(store, user, conversation_id)
    return public(MessagePublic, await store.list_messages(conversation.id))


@router.get("/conversations/{conversation_id}/runs", tags=["runs"])
async def list_runs(store: StoreDep, user: UserDep, conversation_id: str) -> list[RunPublic]:
    """The conversation's runs, oldest first, each with its usage and cost."""
    conversation = await owned_conversation(store, user, conversation_id)
    return public(RunPublic, await store.list_runs(conversation.id))


@router.post("/conversations/{conversation_id}/reflect", tags=["memory"])
async def reflect(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, conversation_id: str
) -> ReflectionPublic:
    """Reflect on the conversation now (/reflect): the reflection model reads its messages
    since the last reflection and edits the memory blocks; answers when it has ended, with
    the edits made or refused and what it cost. 409 while the agent has one running."""
    conversation = await owned_conversation(store, user, conversation_id)
    agent = await owned_agent(store, user, conversation.agent_id)
    return ReflectionPublic.model_validate(
        await runtime.reflector.reflect(agent, conversation.id, "requested")
    )


@router.get("/conversations/{conversation_id}/reflections", tags=["memory"])
async def list_reflections(
    runtime: RuntimeDep, store: StoreDep, user: UserDep, conversation_id: str
) -> list[ReflectionPublic]:
    """The conversation's reflections, newest first: each one's edits, usage and cost."""
    conversation = await owned_conversation(store, user, conversation_id)
    rows = await runtime.reflector.reflections.of_conversation(conversation.id)
    return public(ReflectionPublic, rows)


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(store: StoreDep, user: UserDep, run_id: str) -> RunPublic:
    return RunPublic.model_validate(await owned_run(store, user, run_id))


@router.get("/runs/{run_id}/steps", tags=["runs"])
async def list_steps(store: StoreDep, user: UserDep, run_id: str) -> list[RunStepPublic]:
    """Each model call of the run: input, cached input and output tokens, cost, and the
    context size counted before sending."""
    run = await owned_run(store, user, run_id)
    return public(RunStepPublic, await store.list_steps(run.id))


@router.get("/runs/{run_id}/approvals", tags=["runs"])
async def list_approvals(store: StoreDep, user: UserDep, run_id: str) -> list[ApprovalPublic]:
    """How each tool call of the run was decided (by the policy, the user, or nobody), what
    was shown and its content hash, and how the call ended, oldest decision first."""
    run = await owned_run(store, user, run_id)
    calls = {call.id: call for call in await store.tool_calls_of_run(run.id)}
    return [
        approval_public(approval, calls.get(approval.call_id))
        for approval in await store.list_approvals(run.id)
    ]


async def owned_run(store: StoreDep, user: UserDep, run_id: str) -> Run:
    run = await store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id}")
    await owned_conversation(store, user, run.conversation_id)
    return run
