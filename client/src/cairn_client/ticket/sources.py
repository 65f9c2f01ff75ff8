"""Tickets for `cairn ticket SOURCE`: the Ticket model, SOURCE forms, file and stdin tickets.

Also owns what every ticket source shares: one-line TicketErrors, branch slugs, HTTP calls.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

import httpx

from cairn_client.config import TicketSettings
from cairn_client.errors import CairnError, ExitCode

DEFAULT_TIMEOUT_S = 20.0
SLUG_MAX_CHARS = 40
LINEAR_KEY = re.compile(r"^[A-Z][A-Z0-9]{0,9}-\d+$")
GITHUB_SHORT = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+)#(?P<number>\d+)$")
GITHUB_ISSUE_PATH = re.compile(r"^/([^/]+/[^/]+)/(?:issues|pull)/(\d+)(?:/.*)?$")
LINEAR_ISSUE_PATH = re.compile(r"^/[^/]+/issue/([A-Za-z][A-Za-z0-9]{0,9}-\d+)(?:/.*)?$")
HEADING = re.compile(r"^#{1,6}(?:\s+|$)")
SETEXT_UNDERLINE = re.compile(r"^(?:=+|-+)$")
SOURCE_FORMS = "a Markdown file, - for stdin, owner/repo#123, a GitHub issue URL, or a Linear key"


class TicketError(CairnError):
    """A ticket that cannot be loaded; str(exc) is ONE line saying what is wrong and what to do."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class Ticket:
    """One ticket, whatever it came from: the task `cairn ticket` hands the agent."""

    source: Literal["file", "stdin", "github", "linear"]
    key: str  # "owner/repo#123", "ENG-42", or the file name ("stdin" for -)
    title: str
    body: str  # Markdown; "" only when the title is not
    url: str | None  # the issue's page
    branch_slug: str  # the <slug> of branch cairn/<slug>
    github_repo: str | None = None  # "owner/repo" when the ticket came from GitHub

    def as_prompt(self) -> str:
        """The ticket as the agent reads it: "Ticket <key>: <title>", the body, the URL."""
        head = f"Ticket {self.key}: {self.title}" if self.title else f"Ticket {self.key}"
        return "\n\n".join(part for part in (head, self.body, self.url) if part)


def load_ticket(
    source: str,
    *,
    settings: TicketSettings,
    stdin: TextIO | None = None,
    cwd: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Ticket:
    """Read the ticket SOURCE names: a file (relative to `cwd`), `-` (stdin), `owner/repo#123`,
    a GitHub or GitHub Enterprise issue URL, a Linear key (`ENG-42`) or a Linear issue URL.
    An existing file wins over a string that looks like a key. Raises TicketError."""
    # Imported here: both modules build Tickets and TicketErrors from this one.
    import cairn_client.ticket.github as github
    import cairn_client.ticket.linear as linear

    text = source.strip()
    if text == "-":
        return _stdin_ticket(stdin)
    if re.match(r"^https?://", text, re.IGNORECASE):
        return _url_ticket(text, settings, timeout_s)
    folder = cwd if cwd is not None else Path.cwd()
    path = folder / Path(text).expanduser()
    if text and path.exists():
        return _file_ticket(path)
    if short := GITHUB_SHORT.match(text):
        repo, number = short["repo"], int(short["number"])
        return github.fetch_issue(repo, number, settings=settings, timeout_s=timeout_s)
    if LINEAR_KEY.match(text):
        return linear.fetch_issue(text, settings=settings, timeout_s=timeout_s)
    if "/" in text or "\\" in text or Path(text).suffix:
        raise TicketError(f"no file {text} in {folder}: check the path, or give {SOURCE_FORMS}")
    raise TicketError(f"{text!r} is not a ticket SOURCE: give {SOURCE_FORMS} like ENG-42")


def _url_ticket(url: str, settings: TicketSettings, timeout_s: float) -> Ticket:
    import cairn_client.ticket.github as github
    import cairn_client.ticket.linear as linear

    parts = urlsplit(url)
    if (parts.hostname or "").lower() in ("linear.app", "www.linear.app"):
        if linear_path := LINEAR_ISSUE_PATH.match(parts.path):
            key = linear_path[1].upper()
            return linear.fetch_issue(key, settings=settings, timeout_s=timeout_s)
        raise TicketError(
            f"{url} is not a Linear issue URL: give one like https://linear.app/team/issue/ENG-42"
        )
    if github_path := GITHUB_ISSUE_PATH.match(parts.path):
        api_url = github.github_api_url(settings, f"{parts.scheme}://{parts.netloc}")
        repo, number = github_path[1], int(github_path[2])
        return github.fetch_issue(
            repo, number, settings=settings, api_url=api_url, timeout_s=timeout_s
        )
    raise TicketError(
        f"{url} is not an issue URL: give one like https://github.com/owner/repo/issues/123 "
        "or https://linear.app/team/issue/ENG-42"
    )


def _file_ticket(path: Path) -> Ticket:
    if not path.is_file():
        raise TicketError(f"{path} is not a file: give the Markdown or text file of the ticket")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TicketError(f"{path} is not UTF-8 text: save the ticket as UTF-8") from None
    except OSError as exc:
        raise TicketError(f"cannot read {path}: {exc.strerror or exc}") from None
    title, body = split_title(text)
    if not title and not body:
        raise TicketError(
            f"{path} is empty: write the ticket's title on its first line and details below"
        )
    slug = slugify(title) or slugify(path.stem) or "ticket"
    return Ticket("file", path.name, title, body, None, slug)


def _stdin_ticket(stdin: TextIO | None) -> Ticket:
    stream = stdin if stdin is not None else sys.stdin
    if stream is None or stream.isatty():
        raise TicketError("- reads the ticket from stdin: pipe it in, e.g. cat ticket.md | cairn …")
    title, body = split_title(stream.read())
    if not title and not body:
        raise TicketError("stdin was empty: pipe in the ticket's title and details")
    return Ticket("stdin", "stdin", title, body, None, slugify(title) or "ticket")


def split_title(text: str) -> tuple[str, str]:
    """(title, body) of a ticket's text: the title is the first non-empty line, without its
    Markdown heading marks; the body is the rest, trimmed."""
    lines = clean_text(text).split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    if first == len(lines):
        return "", ""
    title, rest = lines[first].strip(), lines[first + 1 :]
    if HEADING.match(title):
        title = re.sub(r"(?:^|\s+)#+$", "", HEADING.sub("", title)).strip()
    elif rest and SETEXT_UNDERLINE.match(rest[0].strip()):
        rest = rest[1:]
    return title, "\n".join(rest).strip()


def clean_text(text: str | None) -> str:
    """Text with Unix line ends and no surrounding blank space (trackers send \\r\\n)."""
    return (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()


def slugify(text: str) -> str:
    """A branch-safe slug: lower case ASCII letters, digits and '-', at most 40 characters,
    cut at a word boundary when one is near; "" when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) <= SLUG_MAX_CHARS:
        return slug
    cut = slug[:SLUG_MAX_CHARS]
    if slug[SLUG_MAX_CHARS] != "-" and "-" in cut:
        cut = cut.rsplit("-", 1)[0]
    return cut.strip("-")


def send(
    method: str,
    url: str,
    *,
    service: str,
    url_setting: str,
    headers: Mapping[str, str],
    timeout_s: float,
    json: Any = None,
) -> httpx.Response:
    """One HTTP request to a tracker; no answer at all becomes a TicketError naming the URL
    and the setting (`url_setting`) that points elsewhere."""
    try:
        with httpx.Client(timeout=timeout_s, follow_redirects=True) as client:
            return client.request(method, url, headers=headers, json=json)
    except httpx.TimeoutException:
        raise TicketError(
            f"{service} did not answer within {timeout_s:g} s at {url}: "
            f"check your network, or set {url_setting} to the right API URL"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = str(exc) or type(exc).__name__
        raise TicketError(
            f"cannot reach {service} at {url} ({reason}): "
            f"check your network, or set {url_setting} to the right API URL"
        ) from None


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None when it has none (a proxy's HTML error page)."""
    try:
        return response.json()
    except ValueError:
        return None
