"""Site workers: rendering, the line pool, line drivers and the send task."""
