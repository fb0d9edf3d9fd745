"""Phase-1 speed-ups for CUDA GPUs: whole training steps replayed from CUDA graphs (graphs.py)."""
