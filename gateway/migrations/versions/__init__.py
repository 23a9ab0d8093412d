"""Schema versions, oldest first (``0001`` is the schema before migrations existed)."""
