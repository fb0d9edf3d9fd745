"""Phase-1 speed-ups for CPUs. Each module holds one, applied as a context manager by `engine.runtime`."""
