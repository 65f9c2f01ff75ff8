"""The root of every error the server raises on purpose, and the tree below it.

Owns `CairnServerError`; each error is defined beside the code that raises it, derives from
this root (and from the builtin it always was, so `except LookupError` still catches a
missing row), and says in its message what went wrong and what to change. api/errors.py
turns the ones a request can cause into HTTP status codes, in one table.

    CairnServerError
    ├── NotFoundError ........... storage.repository  (LookupError; HTTP 404)
    │   └── UnknownBlockError ... memory.blocks
    ├── BlockExistsError ........ memory.blocks  (ValueError; HTTP 409)
    ├── MemoryEditError ......... memory.edits  (ValueError; HTTP 422, to a model: a tool error)
    │   ├── ReadOnlyBlockError .. memory.blocks
    │   └── StaleBlockError ..... memory.blocks  (HTTP 409)
    ├── InvalidBudgetError ...... context.budget  (ValueError; HTTP 422)
    ├── AgentFileError .......... agentfiles.schema  (ValueError; HTTP 422)
    │   └── AgentFileTooLarge ... agentfiles.schema  (HTTP 413)
    ├── AgentExistsError ........ agentfiles.service  (ValueError; HTTP 409)
    ├── UnknownModelError ....... providers.catalog  (ValueError; HTTP 422)
    ├── InvalidServerNameError .. tools.mcp_remote  (ValueError; HTTP 422)
    ├── BudgetError ............. context.budget  (RuntimeError: a request cannot fit)
    ├── ProviderError ........... providers.base  (RuntimeError: the model failed)
    │   └── ContextOverflowError
    ├── EmbeddingError .......... memory.embeddings  (RuntimeError)
    ├── TokenRefused ............ storage.store  (PermissionError: no session opens)
    ├── RunInProgressError ...... storage.store  (RuntimeError)
    └── SettingsError ........... config  (ValueError: a CAIRN_* variable cannot be used)
"""

from __future__ import annotations


class CairnServerError(Exception):
    """Something the server refuses or cannot do; the message is one line for a person."""
