"""What an agent file becomes in Cairn, decided before anything is stored: the plan.

Owns the mapping of blocks, the system prompt, passages, the model and its window, tools
and every setting Cairn has no counterpart for, each with a row of the report saying why;
a file that cannot be imported without losing memory (a block over its limit, a secret in
memory) is refused here with one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cairn_protocol.redaction import redact
from cairn_protocol.rest import ImportItem, ImportOutcome

from cairn_server.agentfiles.history import HistoryMessage, convert_history
from cairn_server.agentfiles.schema import AgentFile, AgentFileError, FileAgent, FileBlock
from cairn_server.config import MIN_BUDGET, ModelSettings
from cairn_server.context.budget import InvalidBudgetError, check_budget
from cairn_server.context.compiler import INSTRUCTIONS
from cairn_server.memory.archival import normalised_tags
from cairn_server.memory.blocks import DEFAULT_CHAR_LIMIT, LABEL_PATTERN, MAX_CHAR_LIMIT
from cairn_server.providers.catalog import spec_problem

INSTRUCTIONS_LABEL = "instructions"
INSTRUCTIONS_DESCRIPTION = (
    "The system prompt of the agent file this agent was imported from; Cairn's own "
    "instructions come first."
)
MODEL_PREFIXES = {"openai": "openai/", "anthropic": "anthropic/"}
# Letta's tools that Cairn's own tools stand in for.
CAIRN_EQUIVALENTS = {
    "conversation_search": "conversation_search",
    "memory_replace": "memory_replace",
    "memory_insert": "memory_insert",
    "memory_rethink": "memory_rethink",
    "core_memory_replace": "memory_replace",
    "core_memory_append": "memory_insert",
    "memory": "memory_replace, memory_insert and memory_rethink",
    "archival_memory_insert": "archival_insert",
    "archival_memory_search": "archival_search",
    "send_message": "a plain-text answer",
    "fetch_webpage": "fetch_url (each fetch asked for, as your rules say)",
}
_SECRET_KIND = re.compile(r"\[REDACTED:([^\]]+)\]")
# The agent fields this module reads; any other non-empty field is reported.
_READ_AGENT_FIELDS = {
    "id",
    "name",
    "system",
    "memory_blocks",
    "block_ids",
    "tool_ids",
    "llm_config",
    "model",
    "context_window_limit",
    "messages",
    "passages",
    "in_context_message_ids",
    "agent_type",
}
# Agent fields with a reason of their own when they hold something.
_LEFT_OUT_AGENT_FIELDS = {
    "tool_rules": "Cairn's run loop has no tool rules; its policy decides what runs",
    "enable_sleeptime": "Cairn has no sleep-time agent",
    "group_ids": "multi-agent groups are not imported",
    "files_agents": "Letta's open files: Cairn reads the repository through client tools",
    "source_ids": "Letta's data sources are not imported",
    "tool_exec_environment_variables": "tool environment variables are never imported "
    "(they may hold secrets)",
    "secrets": "secrets are never imported",
    "embedding_config": "embeddings are the server's setting (CAIRN_EMBEDDING_MODEL)",
    "description": "Cairn agents have no description",
    "tags": "Cairn agents have no tags",
    "tools": "inline tool definitions are listed, never run",
}
# Letta runtime knobs: reported together in one row when set.
_LETTA_KNOBS = {
    "initial_message_sequence",
    "include_base_tools",
    "include_multi_agent_tools",
    "include_base_tool_rules",
    "include_default_source",
    "metadata",
    "embedding",
    "model_settings",
    "embedding_chunk_size",
    "max_tokens",
    "max_reasoning_tokens",
    "enable_reasoner",
    "reasoning",
    "from_template",
    "template",
    "project",
    "memory_variables",
    "project_id",
    "template_id",
    "base_template_id",
    "identity_ids",
    "message_buffer_autoclear",
    "response_format",
    "timezone",
    "max_files_open",
    "per_file_view_window_char_limit",
    "hidden",
    "parallel_tool_calls",
    "folder_ids",
}
_FILE_LEFT_OUT = {
    "groups": "multi-agent groups are not imported",
    "files": "Letta's files: Cairn reads the repository through client tools",
    "sources": "Letta's data sources are not imported",
    "mcp_servers": "MCP servers are configured in Cairn's settings, never imported",
    "skills": "Cairn has no skills: listed, not installed",
}
_BLOCK_FIELDS = {"id", "label", "value", "limit", "description", "read_only"}
_BLOCK_KNOBS = {
    "project_id",
    "template_name",
    "is_template",
    "template_id",
    "base_template_id",
    "deployment_id",
    "entity_id",
    "preserve_on_migration",
    "metadata",
    "hidden",
    "name",
    "created_by_id",
    "last_updated_by_id",
    "organization_id",
    "tags",
}
# llm_config keys read, or only describing the model read (its endpoint, provider, name).
_LLM_READ = {
    "model",
    "model_endpoint_type",
    "handle",
    "context_window",
    "model_endpoint",
    "provider_name",
    "provider_category",
    "display_name",
}


@dataclass(frozen=True)
class PlannedBlock:
    label: str
    value: str
    description: str
    char_limit: int
    read_only: bool


@dataclass(frozen=True)
class PlannedPassage:
    text: str
    tags: list[str]
    created_at: datetime | None


@dataclass
class ImportPlan:
    """Everything an import stores, and the report of how the file became it."""

    name: str
    blocks: list[PlannedBlock] = field(default_factory=list)
    messages: list[HistoryMessage] = field(default_factory=list)
    passages: list[PlannedPassage] = field(default_factory=list)
    model: str | None = None
    context_budget: int | None = None
    items: list[ImportItem] = field(default_factory=list)

    def row(
        self, kind: str, name: str, outcome: ImportOutcome, reason: str = "", count: int = 1
    ) -> None:
        self.items.append(
            ImportItem(kind=kind, name=name, outcome=outcome, count=count, reason=reason)
        )


def plan_import(
    file: AgentFile, models: ModelSettings, default_budget: int, *, raise_limits: bool = False
) -> ImportPlan:
    """The plan for the file's first agent; AgentFileError when memory would be lost.
    `raise_limits`: a block over its limit gets a limit that holds it instead."""
    agent = file.agents[0]
    plan = ImportPlan(name=agent.name)
    _plan_blocks(plan, file, agent, raise_limits)
    _plan_system(plan, agent)
    plan.messages, message_rows = convert_history(agent.messages)
    plan.items += message_rows
    _plan_passages(plan, agent)
    _plan_model(plan, agent, models, default_budget)
    _plan_tools(plan, file, agent)
    _plan_left_out(plan, file, agent)
    return plan


def cairn_instructions(name: str) -> str:
    """Cairn's own instructions for an agent called `name` (an export's `system`)."""
    return INSTRUCTIONS.format(workspace=name)


# ---------------------------------------------------------------------- memory


def _plan_blocks(plan: ImportPlan, file: AgentFile, agent: FileAgent, raise_limits: bool) -> None:
    by_id = {block.id: block for block in file.blocks if block.id}
    wanted = agent.block_ids if agent.block_ids is not None else list(by_id)
    missing = [block_id for block_id in wanted if block_id not in by_id]
    if missing:
        raise AgentFileError(f"agents.0.block_ids: no block {missing[0]!r} in the file's blocks")
    for block in [by_id[block_id] for block_id in wanted] + agent.memory_blocks:
        _plan_block(plan, block, raise_limits)


def _plan_block(plan: ImportPlan, block: FileBlock, raise_limits: bool) -> None:
    label = _cairn_label(block.label, {b.label for b in plan.blocks})
    value = block.value
    limit = block.limit if block.limit is not None else max(DEFAULT_CHAR_LIMIT, len(value))
    _refuse_secrets(f"block {block.label!r}", value)
    notes = []
    if len(value) > limit:
        if not raise_limits:
            raise AgentFileError(
                f"block {block.label!r} holds {len(value):,} characters, over its limit of "
                f"{limit:,}: shorten it or raise its limit in the file, or import with "
                "--raise-limits"
            )
        notes.append(f"limit {limit:,} raised to {len(value):,} to hold it (--raise-limits)")
        limit = len(value)
    if label != block.label:
        notes.append(f"label {block.label!r} became {label!r} (Cairn's labels: a-z, 0-9, _)")
    if limit > MAX_CHAR_LIMIT:
        if len(value) > MAX_CHAR_LIMIT:
            raise AgentFileError(
                f"block {block.label!r} holds {len(value):,} characters; Cairn's blocks hold "
                f"at most {MAX_CHAR_LIMIT:,}"
            )
        notes.append(f"limit {limit:,} lowered to Cairn's largest, {MAX_CHAR_LIMIT:,}")
        limit = MAX_CHAR_LIMIT
    if limit < 1:
        raise AgentFileError(f"block {block.label!r}: its limit must be at least 1")
    plan.blocks.append(PlannedBlock(label, value, block.description or "", limit, block.read_only))
    outcome: ImportOutcome = "converted" if notes else "kept"
    plan.row("block", label, outcome, "; ".join(notes) or _block_summary(block, limit))
    extras = sorted(
        key
        for key, value in (block.model_extra or {}).items()
        if key not in _BLOCK_KNOBS and key not in _BLOCK_FIELDS and _holds(value)
    )
    if extras:
        plan.row("field", f"block {label}: {', '.join(extras)}", "left_out", "unknown fields")


def _block_summary(block: FileBlock, limit: int) -> str:
    flags = ", read-only" if block.read_only else ""
    return f"{len(block.value):,}/{limit:,} chars{flags}"


def _cairn_label(label: str, taken: set[str]) -> str:
    """The label as Cairn writes labels (1-40 of a-z, 0-9, _, a letter first), made unique."""
    cairn = re.sub(r"[^a-z0-9_]+", "_", label.strip().lower()).strip("_")
    if not cairn or not cairn[0].isalpha():
        cairn = f"block_{cairn}".rstrip("_")
    cairn = cairn[:40]
    base, n = cairn, 2
    while cairn in taken:
        cairn = f"{base[: 40 - len(str(n)) - 1]}_{n}"
        n += 1
    if not LABEL_PATTERN.match(cairn):  # cannot happen after the rules above; stated anyway
        raise AgentFileError(f"block label {label!r} cannot be written as a Cairn label")
    return cairn


def _plan_system(plan: ImportPlan, agent: FileAgent) -> None:
    system = (agent.system or "").strip("\n")
    if not system:
        return
    if system == cairn_instructions(agent.name):
        plan.row("system", "system prompt", "kept", "Cairn's own instructions")
        return
    if any(block.label == INSTRUCTIONS_LABEL for block in plan.blocks):
        plan.row("system", "system prompt", "left_out", "the file has its own instructions block")
        return
    if len(system) > MAX_CHAR_LIMIT:
        plan.row(
            "system",
            "system prompt",
            "left_out",
            f"{len(system):,} characters: more than Cairn's largest block ({MAX_CHAR_LIMIT:,})",
        )
        return
    _refuse_secrets("the system prompt", system)
    limit = max(DEFAULT_CHAR_LIMIT, len(system))
    plan.blocks.append(
        PlannedBlock(INSTRUCTIONS_LABEL, system, INSTRUCTIONS_DESCRIPTION, limit, True)
    )
    plan.row(
        "system",
        "system prompt",
        "converted",
        f"the read-only block {INSTRUCTIONS_LABEL!r}, after Cairn's own instructions",
    )


def _plan_passages(plan: ImportPlan, agent: FileAgent) -> None:
    for index, passage in enumerate(agent.passages):
        if not passage.text.strip():
            raise AgentFileError(f"agents.0.passages.{index}.text: a passage needs some text")
        _refuse_secrets(f"passage {index}", passage.text)
        tags = normalised_tags(passage.tags or [])
        plan.passages.append(PlannedPassage(passage.text, tags, passage.created_at))
    if plan.passages:
        plan.row("passages", "archival passages", "kept", "searchable", len(plan.passages))


def _refuse_secrets(what: str, text: str) -> None:
    redacted, found = redact(text)
    if found:
        kinds = sorted(set(_SECRET_KIND.findall(redacted))) or ["secret"]
        raise AgentFileError(
            f"{what} holds a secret ({', '.join(kinds)}): memory never keeps secrets; "
            "remove it from the file and import again"
        )


# ---------------------------------------------------------------------- model and tools


def _plan_model(
    plan: ImportPlan, agent: FileAgent, models: ModelSettings, default_budget: int
) -> None:
    llm = agent.llm_config or {}
    spec = _model_spec(agent, llm)
    if spec is None:
        if llm.get("model") or agent.model:
            named = agent.model or f"{llm.get('model_endpoint_type')}/{llm.get('model')}"
            plan.row("model", named, "left_out", "Cairn runs openai/… and anthropic/… models")
    else:
        problem = spec_problem(spec, models)
        if problem is None:
            plan.model = spec
            plan.row("model", spec, "kept", "the agent's model from now on")
        else:
            plan.row("model", spec, "left_out", problem.splitlines()[0])
    window = llm.get("context_window") or agent.context_window_limit
    if isinstance(window, int):
        _plan_budget(plan, window, default_budget)
    extras = sorted(k for k, v in llm.items() if k not in _LLM_READ and v not in (None, False))
    if extras:
        plan.row(
            "setting",
            "llm_config: " + ", ".join(extras),
            "left_out",
            "Cairn's model settings are the server's (CAIRN_MODEL_MAX_TOKENS, …)",
        )


def _model_spec(agent: FileAgent, llm: dict[str, Any]) -> str | None:
    for handle in (agent.model, llm.get("handle")):
        if isinstance(handle, str) and handle.startswith(tuple(MODEL_PREFIXES.values())):
            return handle
    prefix = MODEL_PREFIXES.get(str(llm.get("model_endpoint_type")))
    model = llm.get("model")
    return f"{prefix}{model}" if prefix and isinstance(model, str) and model else None


def _plan_budget(plan: ImportPlan, window: int, default_budget: int) -> None:
    name = f"context window {window:,}"
    if window == default_budget:
        plan.row("model", name, "kept", "the server's context budget")
        return
    try:
        if window < MIN_BUDGET:
            raise InvalidBudgetError(f"below Cairn's smallest budget, {MIN_BUDGET:,} tokens")
        check_budget(window, plan.model)
    except InvalidBudgetError as exc:
        plan.row("model", name, "left_out", str(exc))
        return
    plan.context_budget = window
    plan.row("model", name, "converted", "the agent's context budget, in tokens")


def _plan_tools(plan: ImportPlan, file: AgentFile, agent: FileAgent) -> None:
    by_id = {tool.id: tool for tool in file.tools if tool.id}
    wanted = agent.tool_ids if agent.tool_ids is not None else list(by_id)
    for tool in [by_id[tool_id] for tool_id in wanted if tool_id in by_id]:
        equivalent = CAIRN_EQUIVALENTS.get(tool.name)
        if equivalent is not None:
            plan.row("tool", tool.name, "converted", f"replaced by Cairn's {equivalent}")
        elif tool.source_code:
            plan.row(
                "tool",
                tool.name,
                "left_out",
                f"server-side {(tool.source_type or 'python').capitalize()} code: never "
                "executed; listed, not imported",
            )
        else:
            kind = tool.tool_type or "tool"
            plan.row("tool", tool.name, "left_out", f"{kind}: Cairn has no counterpart")


def _plan_left_out(plan: ImportPlan, file: AgentFile, agent: FileAgent) -> None:
    for other in file.agents[1:]:
        plan.row("agent", other.name, "left_out", "one agent per codebase: the first was imported")
    for name, reason in _FILE_LEFT_OUT.items():
        if held := getattr(file, name):
            plan.row("file", name, "left_out", reason, len(held))
    extras = {**(file.model_extra or {}), **(agent.model_extra or {})}
    fields = {**agent.__dict__, **extras}
    for name, reason in _LEFT_OUT_AGENT_FIELDS.items():
        if _holds(fields.get(name)):
            plan.row("setting", name, "left_out", reason, _size(fields[name]))
    knobs = sorted(name for name in _LETTA_KNOBS if _holds(fields.get(name)))
    if knobs:
        plan.row(
            "setting",
            ", ".join(knobs),
            "left_out",
            "Letta runtime settings with no Cairn counterpart",
        )
    known = _READ_AGENT_FIELDS | set(_LEFT_OUT_AGENT_FIELDS) | _LETTA_KNOBS
    unknown = sorted(name for name, value in extras.items() if name not in known and _holds(value))
    if unknown:
        plan.row("field", ", ".join(unknown), "left_out", "unknown fields, ignored", len(unknown))


def _holds(value: object) -> bool:
    """Whether a field says anything (null, false, empty and 0 say nothing)."""
    return value not in (None, False, "", 0) and value != [] and value != {}


def _size(value: object) -> int:
    return len(value) if isinstance(value, list) else 1
