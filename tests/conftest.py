"""Test-wide settings: hypothesis draws the same examples on every run (CI must be deterministic)."""

from hypothesis import settings

settings.register_profile("gmmgan", derandomize=True, print_blob=True)
settings.load_profile("gmmgan")
