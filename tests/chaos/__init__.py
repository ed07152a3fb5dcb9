"""Seeded chaos runs against a real 3-broker cluster: ``python -m tests.chaos --help``."""
