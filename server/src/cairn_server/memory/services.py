"""The memory services of one server process, built once and shared by runs and routes.

Owns how blocks, recall, archival and the optional embedder are wired together.
"""

from __future__ import annotations

from dataclasses import dataclass

from cairn_server.config import EmbeddingSettings
from cairn_server.memory.archival import Archive
from cairn_server.memory.blocks import Blocks
from cairn_server.memory.embeddings import Embedder, make_embedder
from cairn_server.memory.recall import Recall
from cairn_server.memory.snapshots import Snapshots
from cairn_server.storage.db import Database


@dataclass(frozen=True)
class Memory:
    blocks: Blocks
    recall: Recall
    archive: Archive
    snapshots: Snapshots
    embedder: Embedder | None

    @classmethod
    def open(cls, db: Database, settings: EmbeddingSettings | None = None) -> Memory:
        """The memory services; vector search when the embedding settings name a model."""
        embedder = make_embedder(settings or EmbeddingSettings())
        return cls(
            blocks=Blocks(db),
            recall=Recall(db, embedder),
            archive=Archive(db, embedder),
            snapshots=Snapshots(db),
            embedder=embedder,
        )

    async def aclose(self) -> None:
        if self.embedder is not None:
            await self.embedder.aclose()
