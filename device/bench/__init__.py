"""Benchmarks: they print figures and are never timed asserts."""
