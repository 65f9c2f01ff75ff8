"""From a tool request to its preview and outcome: the one entry point to the local tools.

Owns validating and preparing a request (paths resolved, changes, secret files and
preview computed), executing a prepared call, and redacting every text that leaves
the client; neither ever raises for a problem with the request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from cairn_protocol import ToolArgumentsError, ToolRequest, validate_tool_arguments
from cairn_protocol.mcp import is_mcp_tool
from cairn_protocol.redaction import redact, redaction_note
from cairn_protocol.tools import (
    ApplyPatchArgs,
    EditArgs,
    GlobArgs,
    GrepArgs,
    ReadArgs,
    ShellArgs,
    ToolArgs,
    WriteArgs,
)

from cairn_client.mcp.servers import McpServers, check_arguments
from cairn_client.secrets import is_allowed, secret_checker
from cairn_client.tools.base import (
    FileChange,
    McpCall,
    PathFilter,
    PreparedCall,
    Preview,
    ToolOutcome,
)
from cairn_client.tools.changes import (
    StaleChange,
    apply_changes,
    edit_change,
    patch_changes,
    render_diff,
    write_change,
)
from cairn_client.tools.files import glob_files, read_file
from cairn_client.tools.paths import ToolError, relative_display, resolve_in_workspace
from cairn_client.tools.sandbox import Launch, Sandbox, SandboxError, unsandboxed_launch
from cairn_client.tools.search import grep
from cairn_client.tools.shell import ShellResult, run_shell
from cairn_client.tools.shell_check import (
    describe_command,
    destructive_reasons,
    inspect_command,
)
from cairn_client.tools.web import prepare_approval
from cairn_client.tools.withheld import withhold_diff_sections

OUTSIDE_SANDBOX_WARNING = (
    "runs outside the sandbox: it can write anywhere you can, read your credentials and use "
    "the network"
)


def prepare_call(
    root: Path,
    request: ToolRequest,
    allowed_secrets: Collection[str] = (),
    mcp: McpServers | None = None,
) -> PreparedCall:
    """Validate `request`, resolve its paths and compute its changes, secrets and preview.

    A request that cannot run comes back with `error` set (redacted) and an info preview.
    `allowed_secrets` are workspace-relative secret files the user explicitly allowed; `mcp`
    the session's MCP servers, whose tools are named `mcp__<server>__<tool>`.
    """
    if request.approve_only:  # the server runs it once approved: only what it does is read
        return prepare_approval(request)
    if is_mcp_tool(request.tool):
        return _prepare_mcp(request, mcp)
    try:
        args = validate_tool_arguments(request.tool, request.arguments)
    except ToolArgumentsError as exc:
        return PreparedCall(request, None, _request_preview(request), error=_clean(str(exc)))
    try:
        prepared = _prepare(root, request, args)
    except ToolError as exc:
        return PreparedCall(request, args, _info_preview(args), error=_clean(str(exc)))
    except OSError as exc:
        error = _clean(_describe_os_error(exc))
        return PreparedCall(request, args, _info_preview(args), error=error)
    return dataclasses.replace(
        prepared, secret_paths=_secret_paths(root, prepared, allowed_secrets)
    )


def _prepare_mcp(request: ToolRequest, mcp: McpServers | None) -> PreparedCall:
    """An MCP tool's call: its arguments checked against the schema its server gave."""
    tool = mcp.tool(request.tool) if mcp is not None else None
    if tool is None:
        unknown = f"{request.tool} is not a tool of this client's MCP servers"
        return PreparedCall(request, None, _request_preview(request), error=unknown)
    call = McpCall(tool.server, tool.tool, request.arguments)
    arguments = json.dumps(request.arguments, ensure_ascii=False, indent=2)
    preview = Preview(f"MCP {tool.server}: {tool.tool}", "command", arguments, language="json")
    problem = check_arguments(tool, request.arguments)
    error = _clean(problem) if problem is not None else None
    return PreparedCall(request, None, preview, error=error, mcp=call)


@dataclass(frozen=True)
class ShellPlacement:
    """Where a shell command runs: in the sandbox when it is active (outside, it starts from
    the sandbox's environment snapshot less secrets), and with network or not."""

    sandbox: Sandbox
    network: bool = False
    withheld: tuple[str, ...] = ()  # path patterns whose files the sandbox hides


async def execute_call(
    root: Path,
    prepared: PreparedCall,
    allowed_secrets: Collection[str] = (),
    withheld: PathFilter | None = None,
    *,
    placement: ShellPlacement,
    mcp: McpServers | None = None,
) -> ToolOutcome:
    """Run a prepared call; failures of the tool come back as an "error" outcome.

    This is the choke point: every outcome's content and reason are redacted here
    (except a read of a secret file the user explicitly allowed). `withheld` says which
    files a grep or glob over a folder leaves out (the policy's path rules); `placement`
    where a shell command runs (outside any sandbox only when the call asked for it, or
    when none is active, and then the policy asked the user).
    """
    if prepared.request.approve_only:  # the server runs it; this client only approves it
        return ToolOutcome("error", reason="the server runs this call; a client only approves it")
    if prepared.mcp is not None:  # the same redaction; the cap is the MCP call's own
        if prepared.error is not None or mcp is None:
            return redact_outcome(ToolOutcome("error", reason=prepared.error or "no MCP servers"))
        return redact_outcome(await mcp.call(prepared.mcp))
    outcome = await _execute_unredacted(root, prepared, allowed_secrets, withheld, placement)
    if isinstance(prepared.args, ReadArgs) and is_allowed(prepared.args.path, allowed_secrets):
        return outcome
    return redact_outcome(outcome)


def redact_outcome(outcome: ToolOutcome) -> ToolOutcome:
    """`outcome` with known secret formats cut from its content and reason, and a note."""
    content, in_content = redact(outcome.content)
    reason, in_reason = redact(outcome.reason) if outcome.reason is not None else (None, 0)
    if in_content + in_reason == 0:
        return outcome
    note = redaction_note(in_content + in_reason)
    content = f"{content}\n{note}" if content else content
    if reason is not None and not content:
        reason = f"{reason} {note}"
    return dataclasses.replace(outcome, content=content, reason=reason)


def _clean(text: str) -> str:
    redacted, count = redact(text)
    return f"{redacted} {redaction_note(count)}" if count else text


async def _execute_unredacted(
    root: Path,
    prepared: PreparedCall,
    allowed_secrets: Collection[str],
    withheld: PathFilter | None,
    placement: ShellPlacement,
) -> ToolOutcome:
    if prepared.error is not None:
        return ToolOutcome(status="error", reason=prepared.error)
    try:
        return await _execute(root, prepared, allowed_secrets, withheld, placement)
    except StaleChange as exc:
        return ToolOutcome(
            status="error",
            reason=f"{exc.path} changed since the edit was previewed, so nothing was applied; "
            "read the file again and redo the edit",
        )
    except (ToolError, SandboxError) as exc:
        return ToolOutcome(status="error", reason=str(exc))
    except OSError as exc:
        return ToolOutcome(status="error", reason=_describe_os_error(exc))


# --------------------------------------------------------------------------- preparing


def _prepare(root: Path, request: ToolRequest, args: ToolArgs) -> PreparedCall:
    if isinstance(args, (ReadArgs, GrepArgs, GlobArgs)):
        canonical = _with_canonical_path(root, args)
        return PreparedCall(request, canonical, _info_preview(canonical))
    if isinstance(args, ShellArgs):
        facts = inspect_command(args.command, root)
        preview = shell_preview(root, args.command, args.outside_sandbox)
        return PreparedCall(request, args, preview, shell=facts)
    changes = _changes(root, args)
    return PreparedCall(request, args, _diff_preview(args, changes), changes=changes)


def shell_preview(root: Path, command: str, outside_sandbox: bool = False) -> Preview:
    """The exact command, with its destructive findings as warnings (the title says there
    are some; the approval screen lists them), and whether it leaves the sandbox."""
    dangers = tuple(destructive_reasons(command, root))
    title = "Run shell command OUTSIDE the sandbox" if outside_sandbox else "Run shell command"
    warnings = (OUTSIDE_SANDBOX_WARNING, *dangers) if outside_sandbox else dangers
    if dangers:
        title += " ⚠ destructive"
    body = command
    pieces = describe_command(command).splitlines()
    if len(pieces) > 1:  # a chain or a pipe: each command it runs, on its own line
        body += "\n\n# runs, in order:\n" + "\n".join(f"#   {piece}" for piece in pieces)
    return Preview(title, "command", body, language="bash", warnings=warnings)


def _secret_paths(
    root: Path, prepared: PreparedCall, allowed_secrets: Collection[str]
) -> tuple[str, ...]:
    """The secret files a read, a one-file grep or a change would touch."""
    args = prepared.args
    paths = [change.path for change in prepared.changes]
    if isinstance(args, ReadArgs) or (isinstance(args, GrepArgs) and args.path is not None):
        paths.append(args.path or ".")
    is_secret = secret_checker(root, allowed_secrets)
    return tuple(dict.fromkeys(path for path in paths if is_secret(path)))


def _with_canonical_path(root: Path, args: ReadArgs | GrepArgs | GlobArgs) -> ToolArgs:
    """The same arguments with the path as the workspace-relative real path.

    Policy rules and the secret check then see the file that will really be read,
    whatever `../`, absolute or symlinked spelling the model used.
    """
    if args.path is None:
        return args
    canonical = relative_display(root, resolve_in_workspace(root, args.path))
    return args.model_copy(update={"path": canonical})


def _changes(root: Path, args: ToolArgs) -> tuple[FileChange, ...]:
    if isinstance(args, EditArgs):
        return (edit_change(root, args.path, args.old_string, args.new_string, args.replace_all),)
    if isinstance(args, WriteArgs):
        return (write_change(root, args.path, args.content),)
    if isinstance(args, ApplyPatchArgs):
        return patch_changes(root, args.patch)
    raise ToolError(f"no way to prepare {type(args).__name__}")


def _diff_preview(args: ToolArgs, changes: Sequence[FileChange]) -> Preview:
    if isinstance(args, ApplyPatchArgs):
        title = f"Patch {len(changes)} file{'s' if len(changes) != 1 else ''}"
    else:
        title = f"{'Write' if isinstance(args, WriteArgs) else 'Edit'} {changes[0].path}"
    return Preview(title, "diff", render_diff(changes), language="diff")


def _info_preview(args: ToolArgs) -> Preview:
    if isinstance(args, ReadArgs):
        return Preview(f"Read {args.path}", "info", f"read {args.path}{_line_range(args)}")
    if isinstance(args, GrepArgs):
        return Preview("Search file contents", "info", _grep_summary(args))
    if isinstance(args, GlobArgs):
        where = f" in {args.path}" if args.path else ""
        return Preview("Find files", "info", f'glob "{args.pattern}"{where}')
    if isinstance(args, ShellArgs):
        return Preview("Run shell command", "command", args.command, language="bash")
    if isinstance(args, ApplyPatchArgs):
        return Preview("Patch files", "info", "apply a patch")
    if isinstance(args, (EditArgs, WriteArgs)):
        verb = "Write" if isinstance(args, WriteArgs) else "Edit"
        return Preview(f"{verb} {args.path}", "info", f"{verb.lower()} {args.path}")
    return Preview("Tool call", "info", type(args).__name__)


def _request_preview(request: ToolRequest) -> Preview:
    arguments = json.dumps(request.arguments, ensure_ascii=False)
    if len(arguments) > 200:
        arguments = arguments[:200] + "…"
    return Preview(f"Call {request.tool}", "info", f"{request.tool} {arguments}")


def _line_range(args: ReadArgs) -> str:
    if args.offset is None and args.limit is None:
        return ""
    first = args.offset or 1
    if args.limit is None:
        return f" (from line {first})"
    return f" (lines {first}–{first + args.limit - 1})"


def _grep_summary(args: GrepArgs) -> str:
    where = f"in {args.path}" if args.path and args.path != "." else "in the workspace"
    extras = [f"files {args.glob}"] if args.glob else []
    if args.ignore_case:
        extras.append("ignoring case")
    if args.context:
        extras.append(f"{args.context} lines of context")
    suffix = f" ({', '.join(extras)})" if extras else ""
    return f"grep {json.dumps(args.pattern, ensure_ascii=False)} {where}{suffix}"


# --------------------------------------------------------------------------- executing


async def _execute(
    root: Path,
    prepared: PreparedCall,
    allowed_secrets: Collection[str],
    withheld: PathFilter | None,
    placement: ShellPlacement,
) -> ToolOutcome:
    args = prepared.args
    if isinstance(args, ShellArgs):
        launch = await asyncio.to_thread(_shell_launch, root, args, allowed_secrets, placement)
        outcome = _shell_outcome(await run_shell(root, args.command, args.timeout_s, launch))
        content, cut = withhold_diff_sections(outcome.content, placement.withheld)
        return dataclasses.replace(outcome, content=content) if cut else outcome
    if isinstance(args, ReadArgs):
        content = await asyncio.to_thread(read_file, root, args, allowed_secrets)
        return ToolOutcome(status="ok", content=content)
    if isinstance(args, GrepArgs):
        content = await asyncio.to_thread(grep, root, args, withheld)
        return ToolOutcome(status="ok", content=content)
    if isinstance(args, GlobArgs):
        content = await asyncio.to_thread(glob_files, root, args, allowed_secrets, withheld)
        return ToolOutcome(status="ok", content=content)
    if not prepared.changes:
        return ToolOutcome(status="error", reason="there is nothing to change")
    changed = await asyncio.to_thread(apply_changes, root, prepared.changes)
    return ToolOutcome(
        status="ok", content=_confirmation(prepared.changes), changed_files=tuple(changed)
    )


def _confirmation(changes: Sequence[FileChange]) -> str:
    done = [
        f"{'created' if c.before is None else 'deleted' if c.after is None else 'edited'} {c.path}"
        for c in changes
    ]
    return f"Done: {'; '.join(done)}."


def _shell_launch(
    root: Path, args: ShellArgs, allowed_secrets: Collection[str], placement: ShellPlacement
) -> Launch:
    sandbox = placement.sandbox
    if args.outside_sandbox or not sandbox.active:
        return unsandboxed_launch(args.command, sandbox.environ)
    return sandbox.launch(
        root,
        args.command,
        network=placement.network,
        allowed_secrets=allowed_secrets,
        withheld=placement.withheld,
    )


def _shell_outcome(result: ShellResult) -> ToolOutcome:
    if result.succeeded:
        return ToolOutcome(status="ok", content=result.as_text())
    if result.timed_out:
        reason = f"the command timed out after {result.timeout_s:g} s and was killed"
    elif result.killed_after_s is not None:
        reason = f"killed after {result.killed_after_s:.1f} s, before it finished"
    else:
        reason = f"the command exited with code {result.exit_code}"
    return ToolOutcome(status="error", content=result.as_text(), reason=reason)


def _describe_os_error(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
