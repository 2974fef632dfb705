"""Variant sets: how the buckets of a simple experiment are shared among its variants."""
