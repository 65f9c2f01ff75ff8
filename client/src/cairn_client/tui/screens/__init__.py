"""Screens of the Cairn TUI besides the main chat: approval and setup."""
