"""Agent memory in three tiers: core blocks, recall (every message), archival passages.

Owns the services behind the memory tools, the REST routes and the context compiler.
"""
