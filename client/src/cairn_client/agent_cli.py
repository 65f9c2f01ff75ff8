"""`cairn agent export [FILE]` and `cairn agent import FILE`: the agent of a repository as an
agent file (.af, the open JSON format of Letta's stateful agents), out and in.

Owns the commands' files and output (the import's table of what was kept, converted or left
out); the mapping is the server's, reaching it is memory_cli's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cairn_client.errors import UsageError
from cairn_client.memory_cli import plain_console, plain_table, run_with_server, run_with_workspace

if TYPE_CHECKING:  # the REST client (httpx) is imported only when a command runs
    from cairn_protocol import WorkspaceIdentity
    from cairn_protocol.rest import AgentImportReport, AgentPublic

    from cairn_client.api import CairnApi

agent_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="The repository's agent as an agent file (.af): export it, or import one.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OUTCOME_WORDS = {"kept": "kept", "converted": "converted", "left_out": "left out"}


@agent_app.command("export")
def export_command(
    file: Annotated[
        str | None,
        typer.Argument(help="Where to write it (default: <agent name>.af here; - for stdout)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
) -> None:
    """Write this repository's agent as an agent file: memory blocks, every conversation's
    messages, archival passages and its model."""

    async def work(api: CairnApi, agent: AgentPublic) -> tuple[AgentPublic, bytes]:
        return agent, await api.export_agent_file(agent.id)

    agent, document = run_with_server(work)
    if file == "-":
        sys.stdout.buffer.write(document + b"\n")
        return
    target = Path(file) if file else Path(f"{_file_name(agent.display_name)}.af")
    if target.exists() and not force:
        raise UsageError(f"{target} exists; give another FILE or --force to overwrite it")
    pretty = json.dumps(json.loads(document), indent=2, ensure_ascii=False) + "\n"
    try:
        target.write_text(pretty, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    typer.echo(f"exported {agent.display_name} to {target}")


@agent_app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="The agent file (.af) to import; - for stdin.")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Set the codebase's current agent aside (kept, not deleted)."
        ),
    ] = False,
    codebase: Annotated[
        Path | None,
        typer.Option("--codebase", help="The repository the agent is for (default: this one)."),
    ] = None,
    raise_limits: Annotated[
        bool,
        typer.Option(
            "--raise-limits",
            help="Keep a block that holds more than its limit, raising the limit to hold it.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Create the repository's agent from an agent file, and show what was kept, converted
    or left out, and why. Refuses when the repository has an agent, unless --replace."""
    content = _read_agent_file(file)
    if codebase is not None and not codebase.is_dir():
        raise UsageError(f"--codebase {codebase}: not a folder")

    async def work(api: CairnApi, identity: WorkspaceIdentity) -> AgentImportReport:
        return await api.import_agent_file(
            identity, content, replace=replace, raise_limits=raise_limits
        )

    report = run_with_workspace(work, cwd=codebase.resolve() if codebase else None)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    _print_report(report)


def _read_agent_file(file: str) -> bytes:
    from cairn_protocol.rest import AGENT_FILE_MAX_BYTES

    limit = f"Cairn reads agent files up to {AGENT_FILE_MAX_BYTES // 2**20} MiB"
    try:
        if file == "-":
            content = sys.stdin.buffer.read(AGENT_FILE_MAX_BYTES + 1)
        else:
            size = Path(file).stat().st_size
            if size > AGENT_FILE_MAX_BYTES:
                raise UsageError(f"{file} is {size / 2**20:.1f} MiB; {limit}")
            content = Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    if len(content) > AGENT_FILE_MAX_BYTES:
        raise UsageError(f"{file} is over the limit; {limit}")
    return content


def _print_report(report: AgentImportReport) -> None:
    table = plain_table("", "PART", "NAME", "COUNT", "WHY")
    for item in report.items:
        table.add_row(
            OUTCOME_WORDS[item.outcome], item.kind, item.name, f"{item.count:,}", item.reason
        )
    plain_console().print(table)
    totals = ", ".join(
        f"{report.total(outcome):,} {word}"  # type: ignore[arg-type]
        for outcome, word in OUTCOME_WORDS.items()
    )
    where = f"; messages in conversation {report.conversation_id}" if report.conversation_id else ""
    aside = (
        f"; the previous agent {report.replaced_agent_id} was set aside"
        if (report.replaced_agent_id)
        else ""
    )
    typer.echo(
        f"imported as {report.agent.id} for {report.agent.display_name}: {totals}{where}{aside}"
    )


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "agent"
