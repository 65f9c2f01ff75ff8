"""`python -m cairn_fakes --script FILE`: serve the fake model until killed.

Prints one JSON line first (port and base URLs) so a parent process knows where to connect.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cairn_server.api.background import bind_listening

from cairn_fakes.models import DEFAULT_ANTHROPIC_MODELS, DEFAULT_OPENAI_MODELS
from cairn_fakes.quirks import QUIRK_MODES
from cairn_fakes.runner import serve_forever
from cairn_fakes.script import Script, ScriptError


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def model_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("name at least one model")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cairn_fakes",
        description="A fake model server speaking the OpenAI and Anthropic APIs on loopback.",
    )
    parser.add_argument("--script", type=Path, help='JSON file {"turns": [...]}; default: none')
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    parser.add_argument("--record", type=Path, help="append every request to FILE as JSON lines")
    parser.add_argument(
        "--quirks",
        choices=QUIRK_MODES,
        help="answer chat completions as this real server does (its quirks)",
    )
    parser.add_argument(
        "--context-window",
        type=positive_int,
        metavar="TOKENS",
        help="answer longer prompts with the API's context-overflow error; default: unlimited",
    )
    parser.add_argument(
        "--openai-models",
        type=model_names,
        default=DEFAULT_OPENAI_MODELS,
        metavar="A,B",
        help="what GET /v1/models lists to OpenAI clients (others get its 404); "
        f"default: {','.join(DEFAULT_OPENAI_MODELS)}",
    )
    parser.add_argument(
        "--anthropic-models",
        type=model_names,
        default=DEFAULT_ANTHROPIC_MODELS,
        metavar="A,B",
        help=f"the same for Anthropic clients; default: {','.join(DEFAULT_ANTHROPIC_MODELS)}",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        script = Script.from_file(args.script) if args.script else Script()
    except ScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind_listening(port=args.port)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    endpoints = {
        "port": port,
        "openai_base_url": f"http://127.0.0.1:{port}/v1",
        "anthropic_base_url": f"http://127.0.0.1:{port}",
    }
    print(json.dumps(endpoints), flush=True)
    serve_forever(
        script,
        sock=sock,
        record_path=args.record,
        context_window=args.context_window,
        quirks=args.quirks,
        openai_models=args.openai_models,
        anthropic_models=args.anthropic_models,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
