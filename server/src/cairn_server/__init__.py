"""Cairn's server: the agent runtime behind `cairn`, and its version (reported by /v1/health).

The client compares that version with its own install's before using a local server.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cairn-server")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
