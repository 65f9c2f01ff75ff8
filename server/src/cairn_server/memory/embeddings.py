"""Text embeddings from an OpenAI-compatible endpoint, when one is configured.

Owns the Embedder interface, its construction from CAIRN_EMBEDDING_* settings, and vector bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from cairn_server.config import EmbeddingSettings
from cairn_server.errors import CairnServerError

if TYPE_CHECKING:  # numpy loads when vectors are first used (0.04 s of every start otherwise)
    import numpy as np
    from numpy.typing import NDArray

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers (llama.cpp, Ollama, vLLM) ignore the key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "not-needed"
TIMEOUT_S = 30.0
BATCH_SIZE = 128
# Embedding models accept about 8k tokens; longer texts are cut rather than refused.
MAX_CHARS = 8000


class EmbeddingError(CairnServerError, RuntimeError):
    """The embedding endpoint failed; the message says how and where."""


class Embedder(Protocol):
    model: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def aclose(self) -> None: ...


class OpenAIEmbedder:
    """Embeddings through the official `openai` SDK from any OpenAI-compatible endpoint."""

    def __init__(
        self, model: str, base_url: str, api_key: str, *, timeout_s: float = TIMEOUT_S
    ) -> None:
        self.model = model
        self.base_url = base_url
        import openai  # the SDK loads when embeddings are configured, not at every start

        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=1
        )

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; raises EmbeddingError on any failure."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            vectors.extend(await self._embed_batch(texts[start : start + BATCH_SIZE]))
        return vectors

    async def _embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        inputs = [text[:MAX_CHARS] or " " for text in texts]
        where = f"embedding model {self.model!r} at {self.base_url}"
        import openai  # loaded by __init__ already

        try:
            response = await self._client.embeddings.create(
                model=self.model, input=inputs, encoding_format="float"
            )
        except openai.APITimeoutError as exc:
            raise EmbeddingError(f"{where} timed out") from exc
        except openai.APIConnectionError as exc:
            raise EmbeddingError(f"{where} is unreachable: {exc}") from exc
        except openai.APIStatusError as exc:
            raise EmbeddingError(f"{where} answered HTTP {exc.status_code}: {exc.message}") from exc
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"{where} failed: {exc}") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(inputs):
            raise EmbeddingError(f"{where} returned {len(data)} vectors for {len(inputs)} texts")
        return [list(item.embedding) for item in data]

    async def aclose(self) -> None:
        await self._client.close()


def make_embedder(settings: EmbeddingSettings) -> Embedder | None:
    """None unless CAIRN_EMBEDDING_MODEL is set.

    Base URL: CAIRN_EMBEDDING_BASE_URL, else OPENAI_BASE_URL, else OpenAI's. API key:
    CAIRN_EMBEDDING_API_KEY, else OPENAI_API_KEY, else a placeholder for local servers.
    """
    if not settings.model:
        return None
    base_url = settings.base_url or DEFAULT_BASE_URL
    return OpenAIEmbedder(settings.model, base_url, settings.api_key or PLACEHOLDER_API_KEY)


def to_bytes(vector: Sequence[float]) -> bytes:
    """A vector as stored: float32, L2-normalised (so a dot product is the cosine)."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return (array / norm if norm > 0 else array).tobytes()


def from_bytes(blobs: Sequence[bytes]) -> NDArray[np.float32]:
    """Stored vectors as the rows of a matrix (all of one model, so of one width)."""
    import numpy as np

    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.vstack([np.frombuffer(blob, dtype=np.float32) for blob in blobs])


def cosine_ranking(
    query: Sequence[float], ids: Sequence[int], blobs: Sequence[bytes], limit: int
) -> list[tuple[int, float]]:
    """The `limit` ids whose stored vectors are nearest the query, best first, with cosines.

    Only positive cosines count (a vector pointing away is no match); vectors of another
    width (a model that changed its dimensions) are left out."""
    import numpy as np

    q = np.frombuffer(to_bytes(query), dtype=np.float32)
    kept = [(i, blob) for i, blob in zip(ids, blobs, strict=True) if len(blob) == q.nbytes]
    if not kept:
        return []
    matrix = from_bytes([blob for _, blob in kept])
    scores = matrix @ q
    top = np.argsort(-scores, kind="stable")[:limit]
    return [(kept[int(i)][0], float(scores[int(i)])) for i in top if scores[int(i)] > 0]


async def embed_query(
    embedder: Embedder | None, prepare: Callable[[], Awaitable[object]], query: str, what: str
) -> list[float] | None:
    """The query's vector, after `prepare` embeds what is missing; None without a working
    embedder (the search then ranks by text alone)."""
    if embedder is None:
        return None
    try:
        await prepare()
        [vector] = await embedder.embed([query])
    except EmbeddingError as exc:
        logging.getLogger(__name__).warning("%s search without vectors: %s", what, exc)
        return None
    return vector
