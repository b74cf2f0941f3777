"""Routing: the placement policy (pure) and the thin service that applies it to live state."""
