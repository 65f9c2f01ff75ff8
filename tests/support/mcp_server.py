"""A real MCP server (the official SDK's MCPServer) that the tests start over stdio or HTTP.

Well-behaved tools (echo, add, leak a secret, a long output; over HTTP also a header it got)
beside misbehaving ones (hang, crash, print garbage, answer with a result that does not
validate); `--tools N` adds N
generated tools, `--fail-start` exits at once, as a broken server would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from mcp.server.mcpserver import Context, MCPServer

# The SDK diverts fd 1 to stderr while it serves stdio; misbehaving tools write to the wire
# through this copy of it, taken before.
WIRE = os.dup(1)
# A key in a format the redaction knows: it must never reach the model.
LEAKED_KEY = "AKIA" + "Q" * 4 + "7WXYZ2ABCD3EFGH4"


def build(extra_tools: int, http: bool = False) -> MCPServer:
    server = MCPServer("cairn-test")

    if http:  # headers exist over HTTP only (and stdio servers keep their tool count)

        @server.tool(description="The value of an HTTP header this call came with.")
        def header(key: str, ctx: Context) -> str:
            request = ctx.request_context.request
            headers = getattr(request, "headers", None)
            value = headers.get(key) if headers is not None else None
            return f"{key}: {value}" if value is not None else f"{key}: (not sent)"

    @server.tool(description="Echo the text back, prefixed with 'echo: '.")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> str:
        return str(a + b)

    @server.tool(description="Return a line that holds a cloud key.")
    def leak() -> str:
        return f"the deploy key is {LEAKED_KEY}"

    @server.tool(description="Return a very long text.")
    def flood() -> str:
        return "x" * 200_000

    @server.tool(description="Never answer.")
    def hang() -> str:
        time.sleep(3600)
        return "never"

    @server.tool(description="Exit the server process at once.")
    def crash() -> str:
        os._exit(3)

    @server.tool(description="Write a line that is not JSON to stdout, then never answer.")
    def garbage() -> str:
        os.write(WIRE, b"this is not JSON-RPC at all\n")
        time.sleep(3600)
        return "never"

    @server.tool(description="Answer with a result whose content is not a list.")
    def lie(ctx: Context) -> str:
        request_id: object = ctx.request_id
        if isinstance(request_id, str) and request_id.isdigit():
            request_id = int(request_id)
        bad = {"jsonrpc": "2.0", "id": request_id, "result": {"content": "not a list"}}
        os.write(WIRE, (json.dumps(bad) + "\n").encode())
        time.sleep(3600)
        return "never"

    for index in range(extra_tools):
        server.add_tool(
            _generated(index),
            name=f"lookup_record_{index}",
            description=f"Look up record family {index} by its key and return its fields, "
            "including owner, status, creation date and the last ten changes.",
        )
    return server


def _generated(index: int) -> Callable[..., str]:
    def lookup(key: str, include_history: bool = False, limit: int = 10) -> str:
        return f"record {index}/{key}: status ok (history={include_history}, limit={limit})"

    return lookup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=0)
    parser.add_argument("--fail-start", action="store_true")
    parser.add_argument("--http-port", type=int, default=0)
    options = parser.parse_args()
    if options.fail_start:
        print("cannot start: no configuration", file=sys.stderr)
        sys.exit(2)
    server = build(options.tools, http=bool(options.http_port))
    if options.http_port:
        server.run("streamable-http", host="127.0.0.1", port=options.http_port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
