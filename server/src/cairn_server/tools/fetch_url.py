"""The fetch_url tool: a web page, read by the server, as Markdown the model can page through.

Owns its arguments, what the run's client approves before anything is fetched (the checked
URL), and its answer: a heading (where the page came from, its status, size, and any cut), one
slice of the text at a time with how to read on, and secrets cut from it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from cairn_protocol.redaction import redact, redaction_note
from cairn_protocol.tools import FETCH_URL, ToolArgs
from pydantic import Field

from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, server_tool, tool_error
from cairn_server.tools.search import null_as
from cairn_server.tools.web_addresses import FetchRefused, checked_url
from cairn_server.tools.web_pages import FetchError, Page

# Characters of page text per answer (as much as the shell tool's output); the model reads
# on with `offset`, from the cache.
SHOWN_CHARS = 30_000


class FetchUrlArgs(ToolArgs):
    url: str = Field(description="The http:// or https:// address of the page.")
    offset: Annotated[int, null_as(0)] = Field(
        default=0, description="Start at this character of the page's text, to read on."
    )


def approval_arguments(args: FetchUrlArgs) -> dict[str, Any]:
    """What the run's client decides on: the URL as it will be fetched (checked, its fragment
    dropped, the host in lower case), so a rule on a domain judges the host really reached.
    FetchRefused (a ValueError) when the URL can never be fetched: nobody is asked."""
    return {"url": str(checked_url(args.url)), "offset": args.offset}


async def fetch_url(ctx: ToolContext, args: FetchUrlArgs) -> ToolOutcome:
    if ctx.web is None:
        return tool_error("fetching web pages is not available on this server")
    if args.offset < 0:
        return tool_error(f"offset must be 0 or more, not {args.offset}")
    try:
        page, cached = await ctx.web.page(args.url)
    except (FetchRefused, FetchError) as exc:
        return tool_error(str(exc))
    if args.offset and args.offset >= len(page.text):
        return tool_error(
            f"offset {args.offset} is past the end of the page's text ({len(page.text)} characters)"
        )
    age = ctx.web.age_s(page) if cached else None
    content = await asyncio.to_thread(_answer, page, args.offset, age)
    if page.status >= 400:
        return tool_error(f"the server answered HTTP {page.status} {page.reason}\n{content}")
    return ToolOutcome(content)


FETCH_TOOLS: list[ServerTool] = [
    server_tool(
        FETCH_URL,
        "Read a public http(s) page as Markdown (text types only); long pages come in parts: "
        "pass offset.",
        FetchUrlArgs,
        fetch_url,
        "read",
        asks=approval_arguments,
    ),
]


def _answer(page: Page, offset: int, age_s: float | None) -> str:
    """The heading, the slice of text from `offset`, and how to read on; secrets cut."""
    end = min(len(page.text), offset + SHOWN_CHARS)
    shown, secrets = redact(page.text[offset:end])
    parts = [_heading(page, age_s)]
    if offset or end < len(page.text):
        parts.append(f"[characters {offset:,}–{end:,} of {len(page.text):,}]")
    parts.append("")
    parts.append(shown if shown.strip() else "(the page has no readable text)")
    if end < len(page.text):
        parts.append(
            f"\n[{len(page.text) - end:,} more characters: call fetch_url with offset={end} "
            "to read on]"
        )
    if secrets:
        parts.append(redaction_note(secrets))
    return "\n".join(parts)


def _heading(page: Page, age_s: float | None) -> str:
    media_type = page.media_type or "no content type"
    lines = [
        f"{page.url} (HTTP {page.status} {page.reason}, {media_type}, {page.bytes_read:,} bytes)"
    ]
    if page.redirected_from:
        lines.append(f"[redirected from {' → '.join(page.redirected_from)}]")
    if page.cut:
        lines.append(
            f"[the page is longer: reading stopped at the size limit of {page.bytes_read:,} "
            "bytes (CAIRN_FETCH_MAX_BYTES); the rest was not fetched]"
        )
    if age_s is not None:
        lines.append(f"[from the cache: fetched {_duration(age_s)} ago]")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
