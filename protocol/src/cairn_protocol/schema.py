"""JSON Schema generation for the protocol reference in docs/protocol/.

Owns the command that writes (or checks) one schema file per message and per tool.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from cairn_protocol import messages
from cairn_protocol.tools import CLIENT_TOOLS

MESSAGE_MODELS: tuple[type[BaseModel], ...] = (
    messages.Hello,
    messages.UserMessage,
    messages.ToolResult,
    messages.Cancel,
    messages.Ping,
    messages.Compact,
    messages.Welcome,
    messages.RunStarted,
    messages.AssistantDelta,
    messages.AssistantMessage,
    messages.ToolRequest,
    messages.ToolWithdrawn,
    messages.ToolSettled,
    messages.ModelRetry,
    messages.StepFinished,
    messages.ContextCompacted,
    messages.RunFinished,
    messages.ErrorEvent,
    messages.Pong,
)


def render_schemas() -> dict[str, str]:
    """File name → JSON text, for every message, both frame unions and every tool."""
    files: dict[str, Any] = {}
    for model in MESSAGE_MODELS:
        tag = model.model_fields["type"].default
        files[f"messages/{tag}.json"] = model.model_json_schema()
    files["client_frame.json"] = TypeAdapter(messages.ClientFrame).json_schema()
    files["server_frame.json"] = TypeAdapter(messages.ServerFrame).json_schema()
    for name, tool in CLIENT_TOOLS.items():
        files[f"tools/{name}.json"] = {
            "name": name,
            "description": tool.description,
            "parameters": tool.parameters_schema(),
        }
    files["version.json"] = {"protocol_version": messages.PROTOCOL_VERSION}
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def stale_files(out: Path) -> list[str]:
    """Names of schema files under `out` that are missing, different, or left over."""
    expected = render_schemas()
    stale = [n for n, text in expected.items() if _read(out / n) != text]
    present = (
        {p.relative_to(out).as_posix() for p in out.rglob("*.json")} if out.exists() else set()
    )
    return sorted(stale + [n for n in present - expected.keys()])


def write_schemas(out: Path) -> None:
    expected = render_schemas()
    if out.exists():
        for old in out.rglob("*.json"):
            if old.relative_to(out).as_posix() not in expected:
                old.unlink()
    for name, text in expected.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the protocol's JSON Schemas.")
    parser.add_argument("--out", type=Path, default=Path("docs/protocol"))
    parser.add_argument("--check", action="store_true", help="Fail if the files are not current.")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        if stale:
            print(f"stale protocol schemas in {args.out}: {', '.join(stale)}", file=sys.stderr)
            print("run: uv run cairn-protocol-schema", file=sys.stderr)
            return 1
        return 0
    write_schemas(args.out)
    print(f"wrote {len(render_schemas())} schema files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
