"""Small widgets of the Cairn TUI: the chat and the status line."""
