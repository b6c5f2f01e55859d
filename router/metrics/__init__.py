"""Prometheus metrics: per-process instruments (`process`); business metrics live in the store."""
