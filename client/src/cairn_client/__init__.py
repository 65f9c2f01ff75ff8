"""Cairn's client: the `cairn` command, its TUI, the local tools and the policy.

Holds the package's version (pyproject reads it from here), so `cairn --version` imports nothing.
"""

__version__ = "0.1.0"
