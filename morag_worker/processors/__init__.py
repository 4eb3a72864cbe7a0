"""Task processors: one module per task type, looked up through :mod:`.base`'s registry."""
