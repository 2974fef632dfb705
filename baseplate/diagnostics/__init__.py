"""Observers that watch requests: metrics, logging, tracing and error reporting."""
