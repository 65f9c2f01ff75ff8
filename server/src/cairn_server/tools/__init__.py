"""The tools the server runs itself, one module per family (memory edits, recall search,
archival), and the registry that offers them with the client's tools (registry.py)."""
