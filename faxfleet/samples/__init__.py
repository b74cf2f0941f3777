"""Sample documents the demo sends."""
