"""The fake's OpenAI Embeddings dialect: request checks, the hashed test vectors, the answer.

Standard library only, so the bench's real-model server (bench/embedding_server.py, run in
a separate virtualenv) serves the same wire format from this module.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import Any

JsonObject = dict[str, Any]

# A test stand-in, NOT a semantic model: each text's vector counts its hashed words and
# character trigrams in 256 dimensions, L2-normalised. Texts sharing words or spellings come
# out close; synonyms do not. Deterministic, instant, nothing downloaded.
FAKE_EMBEDDING_DIMENSIONS = 256


def fake_embedding(text: str, dimensions: int = FAKE_EMBEDDING_DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    lowered = text.lower()
    words = re.findall(r"\w+", lowered)
    padded = f" {' '.join(words)} "
    features = [f"w:{word}" for word in words]
    features += [f"t:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def embeddings_problem(body: JsonObject, max_inputs: int | None = None) -> str | None:
    """What the real Embeddings API would reject in this body, if anything (`max_inputs`:
    the most texts one request may hold; None: no limit)."""
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "'input' must be a non-empty string or array of strings"
    if max_inputs is not None and len(texts) > max_inputs:
        return f"'input' holds {len(texts)} texts; at most {max_inputs} per request"
    if any(not text for text in texts):
        return "'input' cannot contain an empty string"
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'"
    return None


def input_texts(body: JsonObject) -> list[str]:
    """The texts of a body `embeddings_problem` accepted."""
    texts = body["input"]
    return [texts] if isinstance(texts, str) else list(texts)


def embeddings_payload(body: JsonObject, vectors: list[list[float]], tokens: int) -> JsonObject:
    """The API's answer: each vector as floats, or as base64 of little-endian float32."""
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, vector in enumerate(vectors):
        embedding: list[float] | str = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
