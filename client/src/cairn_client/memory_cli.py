"""`cairn memory ...` and `cairn context`: read, edit and undo the agent's core memory.

Owns finding this workspace's agent over REST and the commands' output. Failures are
CairnErrors (cli.py prints them): exit 1 server error or not found, 2 usage error.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from cairn_client.errors import CairnError, ExitCode, UsageError
from cairn_client.memory_format import (
    HISTORY_COLUMNS,
    block_heading,
    budget_line,
    colour_diff,
    history_row,
    share,
)

# The REST client (httpx) and Rich are imported only when a command runs: `cairn --help` and
# `cairn -p` never pay for them.
if TYPE_CHECKING:
    from cairn_protocol import WorkspaceIdentity
    from cairn_protocol.rest import AgentPublic, BlockPublic, BlockVersionPublic, ContextReport
    from rich.console import Console
    from rich.table import Table

    from cairn_client.api import CairnApi
    from cairn_client.config import ClientSettings

T = TypeVar("T")
Work = Callable[["CairnApi", "AgentPublic"], Awaitable[T]]

ConversationOption = Annotated[
    str | None,
    # No -c: on every command `-c` means "continue the latest conversation".
    typer.Option("--conversation", help="Conversation id (default: the latest)."),
]


memory_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="Read, edit and undo the agent's core memory blocks for this repository.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

LabelArg = Annotated[str, typer.Argument(help="The block's label, e.g. project.")]
ValueOpt = Annotated[str | None, typer.Option("--value", help="The new value.")]
FileOpt = Annotated[
    str | None, typer.Option("--file", "-f", help="Read the value from a file (- for stdin).")
]
DescriptionOpt = Annotated[
    str | None, typer.Option("--description", "-d", help="What the block is for.")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", "-m", help="Why: kept in the block's history.")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="The block's character limit.")
]


# ---------------------------------------------------------------------- commands


@memory_app.command("list")
def list_command() -> None:
    """The blocks: label, characters used of the limit, version, read-only mark."""

    async def work(api: CairnApi, agent: AgentPublic) -> list[BlockPublic]:
        return await api.list_blocks(agent.id)

    blocks = run_with_server(work)
    if not blocks:
        typer.echo("no memory blocks yet (create one with `cairn memory create LABEL`)")
        return
    table = plain_table("LABEL", "CHARS", "VERSION", "", "DESCRIPTION")
    for block in blocks:
        table.add_row(
            block.label,
            f"{block.chars:,}/{block.char_limit:,}",
            f"v{block.version}",
            "read-only" if block.read_only else "",
            block.description,
        )
    plain_console().print(table)


@memory_app.command("show")
def show_command(
    label: LabelArg,
    raw: Annotated[bool, typer.Option("--raw", help="Print only the value.")] = False,
) -> None:
    """One block: its details, then its value."""

    async def work(api: CairnApi, agent: AgentPublic) -> BlockPublic:
        return await api.get_block(agent.id, label)

    block = run_with_server(work)
    if raw:
        typer.echo(block.value, nl=not block.value.endswith("\n"))
        return
    from rich.text import Text

    console = plain_console()
    console.print(Text(block_heading(block), style="bold"))
    if block.description:
        console.print(Text(block.description, style="dim"))
    console.rule(style="dim")
    console.print(Text(block.value), end="" if block.value.endswith("\n") else "\n")


@memory_app.command("create")
def create_command(
    label: LabelArg,
    value: ValueOpt = None,
    file: FileOpt = None,
    description: DescriptionOpt = None,
    limit: LimitOpt = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="The agent may read it but not edit it.")
    ] = False,
) -> None:
    """Create a block (empty unless --value or --file gives its value)."""
    text = _value_from(value, file) or ""

    async def work(api: CairnApi, agent: AgentPublic) -> BlockPublic:
        return await api.create_block(
            agent.id,
            label,
            value=text,
            description=description or "",
            char_limit=limit,
            read_only=read_only,
        )

    block = run_with_server(work)
    typer.echo(f"created {block_heading(block)}")


@memory_app.command("set")
def set_command(
    label: LabelArg,
    value: ValueOpt = None,
    file: FileOpt = None,
    description: DescriptionOpt = None,
    limit: LimitOpt = None,
    read_only: Annotated[
        bool | None,
        typer.Option("--read-only/--writable", help="Stop or allow the agent's edits."),
    ] = None,
    reason: ReasonOpt = None,
) -> None:
    """Change a block's value (--value or --file), description, limit or read-only flag."""
    text = _value_from(value, file)
    if text is None and description is None and limit is None and read_only is None:
        raise UsageError(
            "nothing to change: give --value, --file, --description, --limit or --read-only"
        )

    async def work(api: CairnApi, agent: AgentPublic) -> BlockPublic:
        return await api.update_block(
            agent.id,
            label,
            value=text,
            description=description,
            char_limit=limit,
            read_only=read_only,
            reason=reason,
        )

    block = run_with_server(work)
    typer.echo(f"saved {block_heading(block)}")


@memory_app.command("edit")
def edit_command(label: LabelArg, reason: ReasonOpt = None) -> None:
    """Edit a block's value in $VISUAL or $EDITOR; saved only if no one changed it meanwhile."""

    from cairn_client.api import ApiError
    from cairn_client.config import ClientSettings

    settings = ClientSettings.from_env()

    async def work(api: CairnApi, agent: AgentPublic) -> str:
        block = await api.get_block(agent.id, label)
        import asyncio

        edited = await asyncio.to_thread(_edit_text, settings.editor, label, block.value)
        if edited == block.value:
            return f"{label}: no change"
        try:
            saved = await api.update_block(
                agent.id, label, value=edited, expected_version=block.version, reason=reason
            )
        except ApiError as exc:
            kept = _keep_text(label, edited)
            apply = f"`cairn memory set {label} --file {kept}`"
            if exc.conflict:
                detail = (
                    f"{label} changed meanwhile (you edited v{block.version}); your text is kept "
                    f"in {kept}: see `cairn memory diff {label}`, then {apply} to apply it"
                )
            else:
                detail = f"{exc.detail}; your text is kept in {kept} ({apply} applies it)"
            raise ApiError(exc.status, detail) from exc
        return f"saved {block_heading(saved)}"

    typer.echo(run_with_server(work, settings))


@memory_app.command("delete")
def delete_command(
    label: LabelArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a block; its history stays, and `cairn memory revert` brings it back."""
    if not yes and not typer.confirm(f"Delete memory block {label!r}?"):
        typer.echo("not deleted")
        raise typer.Exit(ExitCode.FAILED)

    async def work(api: CairnApi, agent: AgentPublic) -> int:
        block = await api.get_block(agent.id, label)
        await api.delete_block(agent.id, label)
        return block.version

    version = run_with_server(work)
    typer.echo(f"deleted {label} (`cairn memory revert {label} {version}` brings it back)")


@memory_app.command("history")
def history_command(label: LabelArg) -> None:
    """Every version of a block, newest first: when, what, who, and why."""

    async def work(api: CairnApi, agent: AgentPublic) -> list[BlockVersionPublic]:
        return await api.block_history(agent.id, label)

    versions = run_with_server(work)
    table = plain_table(*(column.upper() for column in HISTORY_COLUMNS))
    for version in versions:
        table.add_row(*history_row(version))
    plain_console().print(table)


@memory_app.command("diff")
def diff_command(
    label: LabelArg,
    from_version: Annotated[
        int | None, typer.Argument(min=1, help="Older version (default: the one before TO).")
    ] = None,
    to_version: Annotated[
        int | None, typer.Argument(min=1, help="Newer version (default: the newest).")
    ] = None,
) -> None:
    """What changed between two versions of a block, as a coloured unified diff."""

    async def work(api: CairnApi, agent: AgentPublic) -> tuple[int, int, str]:
        diff = await api.block_diff(agent.id, label, from_version, to_version)
        return diff.from_version, diff.to_version, diff.diff

    older, newer, diff = run_with_server(work)
    if not diff.strip():
        typer.echo(f"{label}: v{older} and v{newer} have the same value")
        return
    plain_console().print(colour_diff(diff), end="")


@memory_app.command("revert")
def revert_command(
    label: LabelArg,
    version: Annotated[int, typer.Argument(min=1, help="The version whose value comes back.")],
    reason: ReasonOpt = None,
) -> None:
    """Bring back an old version's value, as a new version (works for a deleted block too)."""

    async def work(api: CairnApi, agent: AgentPublic) -> BlockPublic:
        return await api.revert_block(agent.id, label, version, reason=reason)

    block = run_with_server(work)
    typer.echo(f"reverted {label} to the value of v{version}: now {block_heading(block)}")


@memory_app.command("context")
def context_command(
    conversation: ConversationOption = None,
) -> None:
    """The context window of a conversation by section, with tokens and the budget."""

    async def work(api: CairnApi, agent: AgentPublic) -> ContextReport:
        return await api.context(await conversation_or_latest(api, agent, conversation))

    print_context(run_with_server(work))


async def conversation_or_latest(
    api: CairnApi, agent: AgentPublic, conversation: str | None
) -> str:
    """`conversation`, or the agent's latest one; CairnError when it has none yet."""
    if conversation is not None:
        return conversation
    conversations = await api.list_conversations(agent.id)
    if not conversations:
        raise CairnError("no conversation yet: start one with `cairn`")
    return conversations[0].id


# ---------------------------------------------------------------------- output


def print_context(report: ContextReport) -> None:
    from rich.text import Text

    console = plain_console()
    model = report.model or "no model"
    console.print(
        Text(f"Context of {report.conversation_id} · {model} · {report.tokenizer}", style="bold")
    )
    table = plain_table("SECTION", "TOKENS", "SHARE")
    for section in report.sections:
        table.add_row(section.name, f"{section.tokens:,}", share(section.tokens, report.budget))
        for item in section.items:
            table.add_row(
                Text(f"  {item.name}", style="dim"),
                Text(f"{item.tokens:,}", style="dim"),
                Text(share(item.tokens, report.budget), style="dim"),
            )
    console.print(table)
    console.print(budget_line(report.total_tokens, report.budget))


def plain_table(*headers: str) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def plain_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


# ---------------------------------------------------------------------- plumbing


def run_with_server(
    work: Work[T], settings: ClientSettings | None = None, cwd: Path | None = None
) -> T:
    """Find this workspace's server and agent and do `work`; `settings` are the command's
    (default: read from the environment now, once for the command)."""

    async def with_agent(api: CairnApi, identity: WorkspaceIdentity) -> T:
        return await work(api, await api.ensure_agent(identity))

    return run_with_workspace(with_agent, settings, cwd)


def run_with_workspace(
    work: Callable[[CairnApi, WorkspaceIdentity], Awaitable[T]],
    settings: ClientSettings | None = None,
    cwd: Path | None = None,
) -> T:
    """Find the server and the identity of the codebase at `cwd` (default: here) and do
    `work`, without creating its agent."""
    from cairn_client.api import CairnApi
    from cairn_client.config import ClientSettings
    from cairn_client.launch import prepare_launch

    launch = prepare_launch(cwd or Path.cwd(), settings=settings or ClientSettings.from_env())

    async def main() -> T:
        try:
            async with CairnApi(launch.endpoint.resolve, launch.endpoint.token) as api:
                return await work(api, launch.workspace.identity)
        finally:
            await launch.shutdown()

    import asyncio  # here: `cairn --help` does not load it

    return asyncio.run(main())


def _value_from(value: str | None, file: str | None) -> str | None:
    if value is not None and file is not None:
        raise UsageError("give the value with --value or --file, not both")
    if file is None:
        return value
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None


def _edit_text(editor: str, label: str, value: str) -> str:
    """The value after the person edited it in `editor` ($VISUAL or $EDITOR, default vi)."""
    with tempfile.TemporaryDirectory(prefix="cairn-") as folder:
        path = Path(folder) / f"{_safe_name(label)}.md"
        path.write_text(value, encoding="utf-8")
        try:
            finished = subprocess.run([*shlex.split(editor), str(path)], check=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot run the editor {editor!r}: {exc}") from exc
        if finished.returncode != 0:
            raise CairnError(f"the editor exited with status {finished.returncode}; nothing saved")
        edited = path.read_text(encoding="utf-8")
    # Editors end the file with a newline the value did not have.
    if not value.endswith("\n") and edited.endswith("\n"):
        edited = edited[:-1]
    return edited


def _keep_text(label: str, text: str) -> Path:
    """Save text the server refused, so an edit is never lost."""
    fd, name = tempfile.mkstemp(prefix=f"cairn-{_safe_name(label)}-", suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name)


def _safe_name(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label)[:60] or "block"
