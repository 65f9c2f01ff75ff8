"""Codebase bootstrap: how an agent learns a repository it meets for the first time.

Owns the /init instructions and when they are put before a user's message.
"""

from __future__ import annotations

from cairn_server.memory.services import Memory

INIT_INSTRUCTIONS = """\
Learn this repository the way a new engineer would, then record it in your `project` memory \
block.
1. Use glob to see what exists, then read what is there of: README*, AGENTS.md, CLAUDE.md, \
CONTRIBUTING*, docs/ index pages; the package manifests (pyproject.toml, package.json, \
Cargo.toml, go.mod, pom.xml, Gemfile, Makefile...); the test setup (pytest/tox/jest config, \
tests/ layout, CI workflows).
2. Do not change any file and do not run commands; reading is enough.
3. Write the `project` block with memory_rethink: what the project is, its architecture \
(main folders and what they own), the exact commands to install, build, test and lint, \
conventions to follow, and pitfalls. Be concrete and brief; stay within the block's limit.
4. Then tell the user in a few lines what you learned."""

FIRST_MEETING = """\
[This is your first conversation in this repository and your `project` memory is empty. \
Before you answer, learn the repository as follows.]
"""


async def bootstrap_note(memory: Memory, agent_id: str, command: str | None) -> str | None:
    """Instructions to put before a user's message: on /init, and on a first meeting."""
    if command == "init":
        return INIT_INSTRUCTIONS
    if await _first_meeting(memory, agent_id):
        return FIRST_MEETING + INIT_INSTRUCTIONS + "\nThen answer the user's message below."
    return None


async def _first_meeting(memory: Memory, agent_id: str) -> bool:
    """No message was ever exchanged and the project block is as created (empty)."""
    try:
        project = await memory.blocks.get(agent_id, "project")
    except LookupError:
        return False  # deleted on purpose: do not force it back
    if project.version != 1 or project.value.strip():
        return False
    return await memory.recall.count(agent_id) == 0
