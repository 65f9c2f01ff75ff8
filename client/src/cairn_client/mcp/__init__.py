"""The client side of MCP: the stdio servers it starts and whose tools it offers."""
