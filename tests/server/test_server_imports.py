"""Import hygiene of the server: what every start pays for. The app on SQLite loads no
PostgreSQL dialect (a `postgresql_*` argument on a model would load them all, ~0.1 s), and
neither numpy (vectors) nor httpx (fetch_url) before they are used."""

from __future__ import annotations

import json
import subprocess
import sys


def modules_loaded_by(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules under `prefixes` a fresh interpreter holds after importing `module`."""
    probe = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_app_loads_no_postgresql_dialect_until_it_connects_to_postgresql() -> None:
    assert modules_loaded_by("cairn_server.api.app", ("sqlalchemy.dialects.postgresql",)) == []


def test_vectors_and_web_fetches_load_their_libraries_when_first_used() -> None:
    assert modules_loaded_by("cairn_server.api.app", ("numpy", "httpx")) == []
