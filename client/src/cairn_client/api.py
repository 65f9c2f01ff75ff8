"""A small typed async client for the server's REST API: agents, memory, recall, context, runs.

Owns the HTTP calls and turning every failure into one `ApiError` with a one-line message; the
shapes it returns are the server's own, from cairn_protocol.rest.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import quote

from cairn_protocol import WorkspaceIdentity
from cairn_protocol.rest import (
    AgentImportReport,
    AgentPublic,
    ApprovalPublic,
    BlockDiff,
    BlockPublic,
    BlockVersionPublic,
    ContextReport,
    ConversationPublic,
    MessageHit,
    PassagePublic,
    ReflectionPublic,
    RunPublic,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

from cairn_client.errors import CairnError, ExitCode

# httpx loads with the first request: it brings click and pygments (its own CLI), which a
# `cairn` that never calls the REST API should not pay for at start.
if TYPE_CHECKING:
    import httpx

REQUEST_TIMEOUT_S = 30.0
# A reflection answers when its model has read the conversation: minutes on a slow model.
REFLECTION_TIMEOUT_S = 900.0

UrlResolver = Callable[[], Awaitable[str]]
ModelT = TypeVar("ModelT", bound=BaseModel)


class ApiError(CairnError):
    """A request that did not succeed: `status` is the HTTP status (None: no answer at all);
    `code` is the kind of refusal the server named, if it named one."""

    def __init__(self, status: int | None, detail: str, code: str | None = None) -> None:
        super().__init__(detail, exit_code_for_status(status))
        self.status = status
        self.detail = detail
        self.code = code

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def exit_code_for_status(status: int | None) -> ExitCode:
    """A failed request's exit code: no answer at all (the server cannot be reached) and a
    request the server could not use (400, 404, 413, 422) are 2; a refused token (401, 403) is 3;
    anything else the server refused or failed at (409, 5xx) is 1."""
    if status is None or status in (400, 404, 413, 422):
        return ExitCode.USAGE
    if status in (401, 403):
        return ExitCode.MODEL
    return ExitCode.FAILED


class CairnApi:
    """`async with CairnApi(url, token) as api: await api.list_blocks(agent_id)`.

    `base_url` may be a coroutine function returning the URL, resolved per request, so an
    embedded server that restarted on another port is still found.
    """

    def __init__(self, base_url: str | UrlResolver, token: str) -> None:
        self._base_url = base_url
        self._token = token
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ agents

    async def list_agents(self) -> list[AgentPublic]:
        return await self._list(AgentPublic, "GET", "/v1/agents")

    async def ensure_agent(self, identity: WorkspaceIdentity) -> AgentPublic:
        """The agent of this codebase, created on first use."""
        return await self._one(
            AgentPublic, "POST", "/v1/agents", json=identity.model_dump(mode="json")
        )

    async def get_agent(self, agent_id: str) -> AgentPublic:
        return await self._one(AgentPublic, "GET", _agent(agent_id))

    async def set_agent_model(self, agent_id: str, model: str | None) -> AgentPublic:
        """Give the agent `model` from its next message on (None: the server's default);
        ApiError 422, naming what the server runs, when it cannot run it."""
        return await self._one(AgentPublic, "PATCH", _agent(agent_id), json={"model": model})

    async def import_agent_file(
        self,
        identity: WorkspaceIdentity,
        agent_file: bytes,
        *,
        replace: bool = False,
        raise_limits: bool = False,
    ) -> AgentImportReport:
        """Create the codebase's agent from an agent file (.af); ApiError 409 when it has one
        and `replace` is false, 422 naming what is wrong with the file, 413 when too large."""
        params = {**identity.model_dump(exclude={"moved_from"}, exclude_none=True)}
        params["replace"] = "true" if replace else "false"
        params["raise_limits"] = "true" if raise_limits else "false"
        return await self._one(
            AgentImportReport,
            "POST",
            "/v1/agents/import",
            params=params,
            content=agent_file,
            headers={"Content-Type": "application/json"},
        )

    async def export_agent_file(self, agent_id: str) -> bytes:
        """The agent as an agent file (.af JSON), as the server wrote it."""
        response = await self._request("GET", f"{_agent(agent_id)}/export")
        return response.content

    async def list_conversations(self, agent_id: str) -> list[ConversationPublic]:
        """Most recently updated first."""
        return await self._list(ConversationPublic, "GET", f"{_agent(agent_id)}/conversations")

    # ------------------------------------------------------------------ core memory blocks

    async def list_blocks(self, agent_id: str) -> list[BlockPublic]:
        return await self._list(BlockPublic, "GET", f"{_agent(agent_id)}/blocks")

    async def get_block(self, agent_id: str, label: str) -> BlockPublic:
        return await self._one(BlockPublic, "GET", _block(agent_id, label))

    async def create_block(
        self,
        agent_id: str,
        label: str,
        *,
        value: str = "",
        description: str = "",
        char_limit: int | None = None,
        read_only: bool = False,
    ) -> BlockPublic:
        body: dict[str, Any] = {
            "label": label,
            "value": value,
            "description": description,
            "read_only": read_only,
        }
        if char_limit is not None:
            body["char_limit"] = char_limit
        return await self._one(BlockPublic, "POST", f"{_agent(agent_id)}/blocks", json=body)

    async def update_block(
        self,
        agent_id: str,
        label: str,
        *,
        value: str | None = None,
        description: str | None = None,
        char_limit: int | None = None,
        read_only: bool | None = None,
        expected_version: int | None = None,
        reason: str | None = None,
    ) -> BlockPublic:
        """Change what is given; with `expected_version`, a block changed since fails with 409.

        `reason` is kept in the block's history.
        """
        fields = {
            "value": value,
            "description": description,
            "char_limit": char_limit,
            "read_only": read_only,
            "expected_version": expected_version,
            "reason": reason,
        }
        body = {name: given for name, given in fields.items() if given is not None}
        return await self._one(BlockPublic, "PATCH", _block(agent_id, label), json=body)

    async def delete_block(self, agent_id: str, label: str) -> None:
        await self._request("DELETE", _block(agent_id, label))

    async def block_history(self, agent_id: str, label: str) -> list[BlockVersionPublic]:
        """Newest first."""
        return await self._list(BlockVersionPublic, "GET", f"{_block(agent_id, label)}/history")

    async def block_version(self, agent_id: str, label: str, version: int) -> BlockVersionPublic:
        path = f"{_block(agent_id, label)}/versions/{version}"
        return await self._one(BlockVersionPublic, "GET", path)

    async def block_diff(
        self,
        agent_id: str,
        label: str,
        from_version: int | None = None,
        to_version: int | None = None,
    ) -> BlockDiff:
        """Unified diff; by default the newest version against the one before it."""
        params = {"from_version": from_version, "to_version": to_version}
        query = {name: given for name, given in params.items() if given is not None}
        return await self._one(BlockDiff, "GET", f"{_block(agent_id, label)}/diff", params=query)

    async def revert_block(
        self, agent_id: str, label: str, version: int, *, reason: str | None = None
    ) -> BlockPublic:
        """A new version with that version's value (recreates a deleted block)."""
        path = f"{_block(agent_id, label)}/revert"
        body: dict[str, Any] = {"version": version}
        if reason is not None:
            body["reason"] = reason
        return await self._one(BlockPublic, "POST", path, json=body)

    # ------------------------------------------------------------------ archival passages

    async def list_passages(
        self,
        agent_id: str,
        *,
        query: str | None = None,
        tags: Sequence[str] = (),
        limit: int = 20,
        offset: int = 0,
    ) -> list[PassagePublic]:
        """Ranked by relevance with a query, newest first without."""
        params: list[tuple[str, str | int]] = [("limit", limit), ("offset", offset)]
        if query is not None:
            params.append(("query", query))
        params += [("tag", tag) for tag in tags]
        return await self._list(PassagePublic, "GET", f"{_agent(agent_id)}/passages", params=params)

    async def create_passage(
        self, agent_id: str, text: str, tags: Sequence[str] = ()
    ) -> PassagePublic:
        body = {"text": text, "tags": list(tags)}
        return await self._one(PassagePublic, "POST", f"{_agent(agent_id)}/passages", json=body)

    async def delete_passage(self, agent_id: str, passage_id: int) -> None:
        await self._request("DELETE", f"{_agent(agent_id)}/passages/{passage_id}")

    # ------------------------------------------------------------------ recall and context

    async def search_messages(
        self,
        agent_id: str,
        query: str,
        *,
        roles: Sequence[str] = (),
        start_date: date | str | None = None,
        end_date: date | str | None = None,
        limit: int = 10,
    ) -> list[MessageHit]:
        params: list[tuple[str, str | int]] = [("query", query), ("limit", limit)]
        params += [("role", role) for role in roles]
        if start_date is not None:
            params.append(("start_date", str(start_date)))
        if end_date is not None:
            params.append(("end_date", str(end_date)))
        path = f"{_agent(agent_id)}/messages/search"
        return await self._list(MessageHit, "GET", path, params=params)

    async def context(self, conversation_id: str) -> ContextReport:
        """The conversation's context window as the model sees it next, by section."""
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/context"
        return await self._one(ContextReport, "GET", path)

    # ------------------------------------------------------------------ reflection

    async def reflect(self, conversation_id: str) -> ReflectionPublic:
        """Reflect on the conversation now; answers when the reflection has ended (ApiError
        409 while the agent has one running)."""
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/reflect"
        return await self._one(ReflectionPublic, "POST", path, timeout=REFLECTION_TIMEOUT_S)

    async def list_reflections(self, conversation_id: str) -> list[ReflectionPublic]:
        """Newest first."""
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/reflections"
        return await self._list(ReflectionPublic, "GET", path)

    # ------------------------------------------------------------------ runs

    async def list_runs(self, conversation_id: str) -> list[RunPublic]:
        """Oldest first."""
        path = f"/v1/conversations/{quote(conversation_id, safe='')}/runs"
        return await self._list(RunPublic, "GET", path)

    async def get_run(self, run_id: str) -> RunPublic:
        return await self._one(RunPublic, "GET", _run(run_id))

    async def list_approvals(self, run_id: str) -> list[ApprovalPublic]:
        """How each tool call of the run was decided, oldest first."""
        return await self._list(ApprovalPublic, "GET", f"{_run(run_id)}/approvals")

    # ------------------------------------------------------------------ plumbing

    async def _one(self, model: type[ModelT], method: str, path: str, **options: Any) -> ModelT:
        response = await self._request(method, path, **options)
        return _parse(TypeAdapter(model), response)

    async def _list(
        self, model: type[ModelT], method: str, path: str, **options: Any
    ) -> list[ModelT]:
        response = await self._request(method, path, **options)
        return _parse(TypeAdapter(list[model]), response)  # type: ignore[valid-type]

    async def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        import httpx

        base = await self._resolve()
        url = base.rstrip("/") + path
        try:
            response = await self._http().request(method, url, **options)
        except httpx.ConnectError as exc:
            raise ApiError(
                None, f"cannot reach the Cairn server at {base}: {_reason(exc)}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(None, f"the Cairn server at {base} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ApiError(None, f"request to the Cairn server failed: {_reason(exc)}") from exc
        if response.is_error:
            raise ApiError(response.status_code, _error_detail(response), _error_code(response))
        return response

    async def _resolve(self) -> str:
        if isinstance(self._base_url, str):
            return self._base_url
        try:
            return await self._base_url()
        except Exception as exc:  # noqa: BLE001 - e.g. the embedded server failed to start
            raise ApiError(None, str(exc) or type(exc).__name__) from exc

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=REQUEST_TIMEOUT_S,
            )
        return self._client


def _agent(agent_id: str) -> str:
    return f"/v1/agents/{quote(agent_id, safe='')}"


def _block(agent_id: str, label: str) -> str:
    return f"{_agent(agent_id)}/blocks/{quote(label, safe='')}"


def _run(run_id: str) -> str:
    return f"/v1/runs/{quote(run_id, safe='')}"


T = TypeVar("T")


def _parse(adapter: TypeAdapter[T], response: httpx.Response) -> T:
    try:
        return adapter.validate_json(response.content)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise ApiError(
            response.status_code,
            f"unexpected answer from the server ({where}: {problem['msg']})",
        ) from exc


def _error_code(response: httpx.Response) -> str | None:
    """The server's `code` for this refusal, when it gives one (rest.MODEL_NOT_OFFERED)."""
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def _error_detail(response: httpx.Response) -> str:
    """The server's `detail` on one line; FastAPI's validation errors as `field: problem`."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        message = detail
    elif isinstance(detail, list) and detail:
        message = "; ".join(_validation_problem(problem) for problem in detail)
    else:
        message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    return " ".join(message.split())


def _validation_problem(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    location = [str(part) for part in problem.get("loc", []) if part not in ("body", "query")]
    text = str(problem.get("msg", "invalid"))
    return f"{'.'.join(location)}: {text}" if location else text


def _reason(exc: httpx.HTTPError) -> str:
    """The underlying cause in a few words: httpx wraps it in "All connection attempts failed"."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"unknown host ({cause.strerror})"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
