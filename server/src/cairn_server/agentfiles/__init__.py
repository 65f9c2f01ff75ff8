"""Agent files (.af, the open JSON format of Letta's stateful agents): import and export.

Owns reading a file into Cairn's agent, memory and history (schema, mapping, one transaction)
and writing an agent back out; the routes in api/agentfile_routes.py only call it.
"""
