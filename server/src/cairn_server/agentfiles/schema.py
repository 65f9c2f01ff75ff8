"""The agent file format as Cairn reads it: lenient pydantic models of Letta's schema.

Owns parsing raw bytes (size first, then JSON, then a document encoded twice, then shape)
into these models, each problem one line naming the field; unknown fields are kept aside
(`model_extra`) so the import can report them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from cairn_protocol.rest import AGENT_FILE_MAX_BYTES
from cairn_protocol.validation import validation_problems
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from cairn_server.errors import CairnServerError


class AgentFileError(CairnServerError, ValueError):
    """An agent file Cairn cannot import; the message is one line saying what and where."""


class AgentFileTooLarge(AgentFileError):
    """A file over AGENT_FILE_MAX_BYTES, refused before it is parsed."""


def _aware(moment: datetime) -> datetime:
    """A time without a zone is read as UTC (Letta writes UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Moment = Annotated[datetime, AfterValidator(_aware)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class FileBlock(_Lenient):
    id: str | None = None
    label: str
    value: str = ""
    limit: int | None = None
    description: str | None = None
    read_only: bool = False


class FileFunction(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"


class FileToolCall(_Lenient):
    id: str
    type: str = "function"
    function: FileFunction


class FileToolReturn(_Lenient):
    tool_call_id: str | None = None
    status: str | None = None
    func_response: str | None = None


class FileMessage(_Lenient):
    id: str | None = None
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[FileToolCall] | None = None
    tool_call_id: str | None = None
    tool_returns: list[FileToolReturn] | None = None
    created_at: Moment | None = None


class FilePassage(_Lenient):
    text: str
    tags: list[str] | None = None
    created_at: Moment | None = None


class FileTool(_Lenient):
    id: str | None = None
    name: str
    tool_type: str | None = None
    source_type: str | None = None
    source_code: str | None = None
    description: str | None = None
    json_schema: dict[str, Any] | None = None


class FileAgent(_Lenient):
    id: str | None = None
    name: str = "agent"
    system: str | None = None
    description: str | None = None
    agent_type: str | None = None
    memory_blocks: list[FileBlock] = Field(default_factory=list)
    block_ids: list[str] | None = None
    tool_ids: list[str] | None = None
    tools: list[Any] | None = None
    tool_rules: list[Any] | None = None
    llm_config: dict[str, Any] | None = None
    embedding_config: dict[str, Any] | None = None
    model: str | None = None
    context_window_limit: int | None = None
    messages: list[FileMessage] = Field(default_factory=list)
    in_context_message_ids: list[str] | None = None
    passages: list[FilePassage] = Field(default_factory=list)
    enable_sleeptime: bool | None = None
    group_ids: list[str] | None = None
    files_agents: list[Any] | None = None
    source_ids: list[str] | None = None
    tool_exec_environment_variables: dict[str, Any] | None = None
    secrets: Any = None
    tags: list[str] | None = None


class AgentFile(_Lenient):
    agents: list[FileAgent] = Field(min_length=1)
    groups: list[dict[str, Any]] = Field(default_factory=list)
    blocks: list[FileBlock] = Field(default_factory=list)
    files: list[dict[str, Any]] = Field(default_factory=list)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[FileTool] = Field(default_factory=list)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[Any] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None


def parse_agent_file(raw: bytes) -> AgentFile:
    """The file's document, or AgentFileError: too large, not UTF-8 JSON, or a wrong shape.

    Some public files hold the JSON document encoded a second time as one JSON string."""
    if len(raw) > AGENT_FILE_MAX_BYTES:
        raise AgentFileTooLarge(too_large(len(raw)))
    try:
        document: Any = json.loads(raw)
        if isinstance(document, str):
            document = json.loads(document)
    except json.JSONDecodeError as exc:
        raise AgentFileError(
            f"not an agent file: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise AgentFileError("not an agent file: not UTF-8 text") from None
    if not isinstance(document, dict):
        raise AgentFileError("not an agent file: the JSON is not an object with `agents`")
    try:
        return AgentFile.model_validate(document)
    except ValidationError as exc:
        first = validation_problems(exc, whole="(file)").split("; ")[0]
        raise AgentFileError(f"not an agent file Cairn can read: {first}") from None


def too_large(size: int) -> str:
    return (
        f"the agent file is {size / 2**20:.1f} MiB; Cairn reads agent files up to "
        f"{AGENT_FILE_MAX_BYTES // 2**20} MiB"
    )
