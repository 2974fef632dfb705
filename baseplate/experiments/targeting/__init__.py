"""Targeting: which inputs of a ``variant()`` call an experiment applies to."""
