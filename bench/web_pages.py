"""Web pages: what fetch_url's Markdown costs the model against the HTML it came from.

For each page in tests/server/fixtures/web (a documentation page, a blog post in heavy site
chrome, a Sphinx API reference; written for this, no internet here): bytes of HTML, its
tokens, the Markdown's characters and tokens, and the conversion time (the median of several
runs, after trafilatura's one-off import, also printed). Tokens are counted as the context
budget counts them (cl100k).

    uv run python bench/web_pages.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from cairn_server.context.tokens import count_tokens
from cairn_server.tools.web_pages import readable_text

PAGES = Path(__file__).resolve().parent.parent / "tests" / "server" / "fixtures" / "web"
RUNS = 5


def main() -> None:
    started = time.perf_counter()
    readable_text(b"<html><body><p>warm</p></body></html>", None, "html", "https://x/")
    print(f"first conversion (imports trafilatura): {time.perf_counter() - started:.2f} s")
    totals = [0, 0, 0]
    for path in sorted(PAGES.glob("*.html")):
        body = path.read_bytes()
        timings = []
        for _ in range(RUNS):
            start = time.perf_counter()
            markdown = readable_text(body, None, "html", f"https://example.com/{path.name}")
            timings.append(time.perf_counter() - start)
        html_tokens = count_tokens(body.decode())
        markdown_tokens = count_tokens(markdown)
        totals = [totals[0] + len(body), totals[1] + html_tokens, totals[2] + markdown_tokens]
        print(
            f"{path.name}: html_bytes={len(body)} html_tokens={html_tokens} "
            f"markdown_chars={len(markdown)} markdown_tokens={markdown_tokens} "
            f"share={markdown_tokens / html_tokens:.0%} "
            f"convert_ms={statistics.median(timings) * 1000:.1f}"
        )
    print(
        f"total: html_bytes={totals[0]} html_tokens={totals[1]} markdown_tokens={totals[2]} "
        f"share={totals[2] / totals[1]:.0%}"
    )


if __name__ == "__main__":
    main()
