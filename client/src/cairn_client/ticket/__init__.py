"""Tickets for `cairn ticket SOURCE`: loading them from files, stdin, GitHub and Linear."""
