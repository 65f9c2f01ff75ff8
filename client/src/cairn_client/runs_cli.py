"""`cairn runs ...`: the runs of this repository's conversation and each run's approvals.

Owns those commands' output; reaching the server is memory_cli's, and failures are
CairnErrors that cli.py prints (exit 1 server error or not found, 2 usage error).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cairn_client.memory_cli import (
    ConversationOption,
    conversation_or_latest,
    plain_console,
    plain_table,
    run_with_server,
)
from cairn_client.memory_format import when

if TYPE_CHECKING:  # the REST client (httpx) is imported only when a command runs
    from cairn_protocol.rest import AgentPublic, ApprovalPublic, RunPublic

    from cairn_client.api import CairnApi

SHORT_HASH = len("sha256:") + 12

runs_app = typer.Typer(
    rich_markup_mode=None,  # plain help: no <bool>/<str> type column
    help="The agent's runs in this repository: usage, cost, every approval and denial, and "
    "what came of each call.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@runs_app.command("list")
def list_command(
    conversation: ConversationOption = None,
) -> None:
    """The runs of a conversation, oldest first: when, outcome, steps, tokens and cost."""

    async def work(api: CairnApi, agent: AgentPublic) -> list[RunPublic]:
        return await api.list_runs(await conversation_or_latest(api, agent, conversation))

    runs = run_with_server(work)
    if not runs:
        typer.echo("no runs yet in this conversation")
        return
    table = plain_table("RUN", "STARTED", "STATUS", "STOP REASON", "STEPS", "TOKENS", "COST")
    for run in runs:
        table.add_row(
            run.id,
            when(run.created_at),
            run.status,
            run.stop_reason or "",
            str(run.steps),
            f"{run.input_tokens:,} in / {run.output_tokens:,} out",
            f"${run.cost_usd:.4f}",
        )
    plain_console().print(table)


@runs_app.command("show")
def show_command(
    run_id: Annotated[
        str, typer.Argument(metavar="RUN", help="The run's id (see `cairn runs list`).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="The run and its full approval records as JSON.")
    ] = False,
    shown: Annotated[
        bool, typer.Option("--shown", help="Also print what each approval showed.")
    ] = False,
) -> None:
    """One run: its outcome and usage, then how each tool call was approved or denied and how
    it ended (with --shown: what was shown, and the output the model got)."""

    async def work(api: CairnApi, agent: AgentPublic) -> tuple[RunPublic, list[ApprovalPublic]]:
        return await api.get_run(run_id), await api.list_approvals(run_id)

    run, approvals = run_with_server(work)
    if as_json:
        payload = {
            "run": run.model_dump(mode="json"),
            "approvals": [approval.model_dump(mode="json") for approval in approvals],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_run(run)
    _print_approvals(approvals, shown)


def _print_run(run: RunPublic) -> None:
    from rich.text import Text

    console = plain_console()
    outcome = " · ".join(part for part in (run.status, run.stop_reason) if part)
    console.print(Text(f"{run.id} · {outcome}", style="bold"))
    from cairn_protocol import Usage

    from cairn_client.formatting import CONTINUE_LATER, stop_sentence, usage_label

    usage = Usage(
        input_tokens=run.input_tokens,
        cached_input_tokens=run.cached_input_tokens,
        output_tokens=run.output_tokens,
        cost_usd=run.cost_usd,
    )
    console.print(f"{run.model} · {run.steps} steps · {usage_label(usage)}")
    finished = when(run.finished_at) if run.finished_at else "not yet"
    console.print(f"started {when(run.created_at)} · finished {finished}")
    ending = stop_sentence(run.stop_reason, run.detail, CONTINUE_LATER) if run.stop_reason else None
    if ending is not None:
        console.print(Text(ending, style="dim"))
    elif run.detail:
        console.print(Text(run.detail, style="dim"))


def _print_approvals(approvals: list[ApprovalPublic], with_shown: bool) -> None:
    from rich.text import Text

    console = plain_console()
    console.print()
    if not approvals:
        console.print("no approvals recorded for this run")
        return
    table = plain_table("TIME", "TOOL", "DECISION", "BY", "ANSWER", "HASH", "REASON", "OUTCOME")
    for approval in approvals:
        table.add_row(
            when(approval.decided_at),
            approval.tool,
            approval.decision,
            approval.decided_by,
            approval.answer or "",
            approval.content_hash[:SHORT_HASH],
            approval.reason,
            outcome_label(approval),
        )
    console.print(table)
    if not with_shown:
        return
    for approval in approvals:
        console.print()
        heading = f"{when(approval.decided_at)} · {approval.tool} · {approval.shown_title}"
        console.rule(Text(heading, style="bold"), align="left", style="dim")
        console.print(Text(approval.content_hash, style="dim"))
        console.print(Text(approval.shown), end="" if approval.shown.endswith("\n") else "\n")
        if approval.outcome_content:
            console.print(Text(f"outcome: {outcome_label(approval)}", style="dim"))
            output = approval.outcome_content
            console.print(Text(output), end="" if output.endswith("\n") else "\n")


def outcome_label(approval: ApprovalPublic) -> str:
    """How the call ended: "ran", "not run", "waiting", or the status with its reason (e.g.
    "error: approved and started, then killed after 3.0 s…", "unknown: …")."""
    labels = {"ok": "ran", "denied": "not run", "pending": "waiting"}
    if approval.outcome in labels:
        return labels[approval.outcome]
    return f"{approval.outcome}: {approval.outcome_reason or 'no reason given'}"
