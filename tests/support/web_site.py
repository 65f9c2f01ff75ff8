"""A small web site on loopback for fetch_url's tests: pages, redirects, traps; every hit kept.

Serves an HTML page from fixtures/web, redirects anywhere (`/redirect?to=URL`), a redirect
loop, a slow endless page, a 10 MB page, binary files (typed and untyped) and a counted page.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from cairn_fakes.runner import UVICORN_OPTIONS
from cairn_server.api.background import ThreadedServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

PAGES = Path(__file__).resolve().parents[1] / "server" / "fixtures" / "web"
HUGE_BYTES = 10 * 2**20
PNG_START = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"


class WebSite(ThreadedServer):
    """`with WebSite() as site:` serves on 127.0.0.1 at `site.url`; `site.hits` lists the
    paths requested, oldest first."""

    def __init__(self) -> None:
        routes = [
            Route("/docs/{name}", self._page),
            Route("/redirect", self._redirect),
            Route("/loop/a", self._loop("/loop/b")),
            Route("/loop/b", self._loop("/loop/a")),
            Route("/slow", self._slow),
            Route("/huge", self._huge),
            Route("/image.png", self._png),
            Route("/untyped", self._untyped),
            Route("/notes.txt", self._text),
        ]
        super().__init__(Starlette(routes=routes), **UVICORN_OPTIONS)
        self._lock = threading.Lock()
        self._hits: list[str] = []

    @property
    def hits(self) -> list[str]:
        with self._lock:
            return list(self._hits)

    @property
    def address(self) -> str:
        """host:port, as CAIRN_FETCH_ALLOW takes it."""
        return f"127.0.0.1:{self.port}"

    def _hit(self, request: Request) -> None:
        with self._lock:
            self._hits.append(request.url.path)

    async def _page(self, request: Request) -> Response:
        self._hit(request)
        path = PAGES / request.path_params["name"]
        if not path.is_file():
            return Response("<h1>Not here</h1><p>No such page.</p>", 404, media_type="text/html")
        return Response(path.read_bytes(), media_type="text/html; charset=utf-8")

    async def _redirect(self, request: Request) -> Response:
        self._hit(request)
        return RedirectResponse(request.query_params["to"], status_code=302)

    def _loop(self, to: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            self._hit(request)
            return RedirectResponse(to, status_code=301)

        return endpoint

    async def _slow(self, request: Request) -> Response:
        self._hit(request)

        async def dribble() -> AsyncIterator[bytes]:
            yield b"<html><body>"
            while True:
                await asyncio.sleep(0.1)
                yield b"<p>still going</p>\n"

        return StreamingResponse(dribble(), media_type="text/html")

    async def _huge(self, request: Request) -> Response:
        self._hit(request)
        paragraph = b"<p>" + b"All work and no play makes a very long page. " * 20 + b"</p>\n"

        async def chunks() -> AsyncIterator[bytes]:
            yield b"<html><body><h1>A very long page</h1>\n"
            for _ in range(HUGE_BYTES // len(paragraph) + 1):
                yield paragraph

        return StreamingResponse(chunks(), media_type="text/html")

    async def _png(self, request: Request) -> Response:
        self._hit(request)
        return Response(PNG_START + bytes(range(256)) * 4, media_type="image/png")

    async def _untyped(self, request: Request) -> Response:
        self._hit(request)
        return Response(b"\x7fELF\x02\x01\x01\x00" + bytes(512))

    async def _text(self, request: Request) -> Response:
        self._hit(request)
        return Response("line one\nline two\n", media_type="text/plain")
