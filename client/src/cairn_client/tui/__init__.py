"""The Textual TUI of the `cairn` command: `app.CairnApp`, its screens, widgets and messages."""
