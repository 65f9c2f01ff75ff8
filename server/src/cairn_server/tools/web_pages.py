"""Fetching a web page for fetch_url: bounded in size, time and redirects, as Markdown, cached.

Owns the HTTP exchange (each hop connects to the address that was checked, so a name that
resolves differently the second time reaches nothing new; a redirect to another host than the
one approved is refused), which content types count as text,
HTML turned into Markdown (trafilatura), and the per-URL cache.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cairn_server import __version__
from cairn_server.config import FetchSettings
from cairn_server.tools.web_addresses import (
    FetchRefused,
    checked_url,
    destination,
    host_of,
    next_url,
)

if TYPE_CHECKING:  # httpx loads at the first fetch (0.04 s of every server start otherwise)
    import httpx

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CACHED_PAGES = 32  # most pages kept at once (each at most a few MB); the oldest goes first
SHOWN_HEADER_CHARS = 100  # of a status reason or content type the server chose
SNIFFED_BYTES = 1024  # a NUL among these marks a binary body, whatever its declared type
USER_AGENT = f"Cairn/{__version__} (fetch_url)"
ACCEPT = "text/html, text/markdown, text/plain, application/json, application/xml;q=0.9, */*;q=0.1"
# Media types outside text/* that are text to read (besides any ending in +json, +xml, +yaml).
TEXT_APPLICATION_TYPES = frozenset(
    {
        "json",
        "xml",
        "javascript",
        "ecmascript",
        "x-javascript",
        "yaml",
        "x-yaml",
        "toml",
        "x-sh",
        "x-python",
        "sql",
        "graphql",
        "x-ndjson",
        "csv",
    }
)
Kind = Literal["html", "text"]


class FetchError(ValueError):
    """The page could not be fetched or read; the message says why, in one line."""


@dataclass(frozen=True)
class Page:
    """A fetched page as fetch_url shows it."""

    url: str  # where it was read, after any redirects
    redirected_from: tuple[str, ...]  # the URLs before it, the model's first
    status: int
    reason: str
    media_type: str  # as the server declared it, or "" when it did not
    bytes_read: int
    cut: bool  # reading stopped at the size limit
    text: str  # Markdown for HTML; other text as it came
    fetched_at: float  # on the cache's clock


class WebPages:
    """fetch_url's fetcher and its cache of pages, one per server process. In memory: a page
    the model read is already in its conversation; this only spares the site a second fetch."""

    def __init__(self, settings: FetchSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, Page] = OrderedDict()

    async def page(self, url_text: str) -> tuple[Page, bool]:
        """The page at `url_text` and whether it came from the cache; FetchRefused (from
        web_addresses) or FetchError, one line each, when it cannot be had."""
        url = checked_url(url_text)
        key = str(url)
        cached = self._fresh(key)
        if cached is not None:
            return cached, True
        page = await self._download(url)
        if self.settings.cache_ttl_s > 0:
            self._cache[key] = page
            while len(self._cache) > CACHED_PAGES:
                self._cache.popitem(last=False)
        return page, False

    def age_s(self, page: Page) -> float:
        return self._clock() - page.fetched_at

    def _fresh(self, key: str) -> Page | None:
        page = self._cache.get(key)
        if page is None:
            return None
        if self.age_s(page) >= self.settings.cache_ttl_s:
            del self._cache[key]
            return None
        return page

    async def _download(self, url: httpx.URL) -> Page:
        limit = self.settings.timeout_s
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
        import httpx

        # trust_env=False: no proxy from the environment (it would connect for us, to any
        # address) and no .netrc credentials.
        async with httpx.AsyncClient(
            headers=headers, timeout=limit, follow_redirects=False, trust_env=False
        ) as client:
            try:
                async with asyncio.timeout(limit):
                    return await self._follow(client, url)
            except TimeoutError:
                raise FetchError(
                    f"{url} was not read within {limit:g} s (CAIRN_FETCH_TIMEOUT_S), so fetching "
                    "it was stopped; nothing was kept"
                ) from None
            except httpx.HTTPError as exc:
                raise FetchError(f"fetching {url} failed: {_http_problem(exc)}") from None

    async def _follow(self, client: httpx.AsyncClient, url: httpx.URL) -> Page:
        """Fetch `url`, following redirects by hand so each hop is checked like the first."""
        hops = [url]
        while True:
            answer = await self._hop(client, hops[-1], tuple(map(str, hops[:-1])))
            if isinstance(answer, Page):
                return answer
            if host_of(answer) != host_of(hops[0]):
                raise FetchRefused(
                    f"{hops[-1]} redirects to '{answer}', refused: that is another host than "
                    f"the one approved ({host_of(hops[0])}); to read it, call fetch_url with "
                    "that URL, which is approved on its own"
                )
            if answer in hops:
                raise FetchError(f"{hops[0]} redirects in a loop ({hops[-1]} → {answer})")
            if len(hops) > self.settings.max_redirects:
                raise FetchError(
                    f"{hops[0]} redirects more than {self.settings.max_redirects} times "
                    "(CAIRN_FETCH_MAX_REDIRECTS); the last hop led to "
                    f"{answer}"
                )
            hops.append(answer)

    async def _hop(
        self, client: httpx.AsyncClient, url: httpx.URL, before: tuple[str, ...]
    ) -> Page | httpx.URL:
        """One request: the page, or where a redirect leads (checked)."""
        try:
            target = await destination(url, self.settings)
        except FetchRefused as exc:
            if not before:
                raise
            raise FetchRefused(f"{before[-1]} redirects to '{url}', refused: {exc}") from None
        extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
        request = client.build_request(
            "GET",
            url.copy_with(host=str(target.address)),
            headers={"Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location:
                return next_url(url, location)
            return await self._read(url, before, response)
        finally:
            await response.aclose()

    async def _read(
        self, url: httpx.URL, before: tuple[str, ...], response: httpx.Response
    ) -> Page:
        media_type, charset = _content_type(response.headers.get("content-type", ""))
        kind = text_kind(media_type) if media_type else None
        if media_type and kind is None:
            raise FetchError(_not_text(url, media_type))
        body, cut = await _capped_body(response, self.settings.max_bytes)
        wide = (charset or "").lower().startswith(("utf-16", "utf-32"))  # NULs are text there
        if b"\x00" in body[:SNIFFED_BYTES] and not wide:
            raise FetchError(_not_text(url, media_type or "binary data with no content type"))
        kind = kind or ("html" if _looks_like_html(body) else "text")
        text = await asyncio.to_thread(readable_text, body, charset, kind, str(url))
        return Page(
            url=str(url),
            redirected_from=before,
            status=response.status_code,
            reason=response.reason_phrase[:SHOWN_HEADER_CHARS],
            media_type=media_type,
            bytes_read=len(body),
            cut=cut,
            text=text,
            fetched_at=self._clock(),
        )


def text_kind(media_type: str) -> Kind | None:
    """How a body of this media type is read: as HTML, as text, or not at all (None)."""
    if media_type in ("text/html", "application/xhtml+xml"):
        return "html"
    family, _, subtype = media_type.partition("/")
    if family == "text":
        return "text"
    structured = subtype.rpartition("+")[2]  # application/ld+json, application/atom+xml…
    if family == "application" and (
        subtype in TEXT_APPLICATION_TYPES or structured in ("json", "xml", "yaml")
    ):
        return "text"
    return None


async def _capped_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of the body (decompressed), and whether there was more."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        room = max_bytes - len(body)
        body += chunk[:room]
        if len(chunk) > room:
            return bytes(body), True
    return bytes(body), False


def readable_text(body: bytes, charset: str | None, kind: Kind, url: str) -> str:
    """The body as the model reads it: HTML as Markdown, other text decoded."""
    if kind == "text":
        return _decoded(body, charset or "utf-8")
    # Imported here: trafilatura (and lxml) take over a second to import, and only a server
    # whose model fetches a page needs them.
    import trafilatura
    from trafilatura.utils import load_html

    html: str | bytes = _decoded(body, charset) if charset else body  # bytes: it finds the charset
    tree = load_html(html)
    if tree is None:  # no markup to speak of
        return _decoded(body, charset or "utf-8").strip()
    _tidy(tree)
    markdown = trafilatura.extract(
        tree,
        url=url,
        output_format="markdown",
        include_links=True,
        include_tables=True,
        include_formatting=True,
        include_images=False,
        include_comments=False,
        favor_recall=True,
        with_metadata=False,
    )
    return (markdown or trafilatura.html2txt(html)).strip()


def _tidy(tree: Any) -> None:  # lxml's HtmlElement: lxml ships no type hints
    """Definition lists become plain blocks (API references, Sphinx's above all, put a whole
    function's text, tables and examples in one <dd>, which trafilatura would flatten into one
    line), and heading anchors ("¶") go."""
    for anchor in tree.xpath('//a[contains(concat(" ", @class, " "), " headerlink ")]'):
        anchor.drop_tree()
    for element in tree.iter("dl", "dt", "dd"):
        element.tag = "div"


def _decoded(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _content_type(header: str) -> tuple[str, str | None]:
    """The media type (lower case, "" when none was sent) and the charset parameter."""
    media_type, *parameters = header.split(";")
    charset = None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'")
    return media_type.strip().lower()[:SHOWN_HEADER_CHARS], charset


def _looks_like_html(body: bytes) -> bool:
    start = body[:SNIFFED_BYTES].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html")) or b"<body" in start


def _not_text(url: httpx.URL, what: str) -> str:
    return (
        f"{url} is {what}, not text; fetch_url reads web pages and text (HTML, plain text, "
        "Markdown, JSON, XML…) only"
    )


def _http_problem(exc: httpx.HTTPError) -> str:
    import httpx

    kinds = [
        (httpx.ConnectTimeout, "the connection timed out"),
        (httpx.ConnectError, "could not connect"),
        (httpx.ReadTimeout, "the server stopped sending"),
        (httpx.RemoteProtocolError, "the server broke the HTTP protocol"),
    ]
    kind = next((text for cls, text in kinds if isinstance(exc, cls)), type(exc).__name__)
    detail = str(exc).strip()
    return f"{kind} ({detail})" if detail else kind
