"""Cairn's wire protocol: typed frames, client tool schemas and the workspace identity.

Both the client and the server depend on this package and on nothing of each other.
"""

from cairn_protocol.messages import (
    PROTOCOL_VERSION,
    AssistantDelta,
    AssistantMessage,
    Cancel,
    ClientFrame,
    ErrorEvent,
    FrameError,
    Hello,
    HistoryItem,
    HistoryToolCall,
    Ping,
    Pong,
    RunFinished,
    RunStarted,
    ServerEvent,
    ServerFrame,
    ToolRequest,
    ToolResult,
    ToolSettled,
    Usage,
    UserMessage,
    Welcome,
    dump_frame,
    parse_client_frame,
    parse_server_frame,
)
from cairn_protocol.tools import CLIENT_TOOLS, ToolArgumentsError, validate_tool_arguments
from cairn_protocol.workspace import WorkspaceIdentity, normalise_origin

__all__ = [
    "PROTOCOL_VERSION", "AssistantDelta", "AssistantMessage", "Cancel", "ClientFrame",
    "ErrorEvent", "FrameError", "Hello", "HistoryItem", "HistoryToolCall", "Ping", "Pong",
    "RunFinished", "RunStarted", "ServerEvent", "ServerFrame", "ToolRequest", "ToolResult",
    "ToolSettled", "Usage", "UserMessage", "Welcome", "dump_frame", "parse_client_frame",
    "parse_server_frame", "CLIENT_TOOLS", "ToolArgumentsError", "validate_tool_arguments",
    "WorkspaceIdentity", "normalise_origin",
]
