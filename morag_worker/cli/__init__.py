"""Command-line entry points: thin — parse, configure, call."""
