"""Example programs built on Baseplate (see docs/getting_started.rst)."""
