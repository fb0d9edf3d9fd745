"""Prefect tasks, one per pipeline stage: thin wrappers over `setfit_core.pipeline`.

Each task rebuilds the library's `PipelineRun` from the plain job dict and the plan (data hashes and
stage keys), runs one stage, adds UI artifacts, and returns the stage's plain result dict. Reuse is
the library's decision (a verified stage with the same key), so every task sets `NO_CACHE`.
"""
