"""Cairn's server: the agent runtime behind `cairn`, and its version (reported by /v1/health).

The client compares that version with its own install's before using a local server.
"""

__version__ = "0.1.0"  # the package's version (pyproject reads it from here)
