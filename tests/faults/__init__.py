"""Faults and bad inputs against real ``baseplate-serve`` processes, on loopback only."""
