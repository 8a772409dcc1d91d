"""The package version (imported by every stage that records it; imports nothing)."""

__version__ = "0.2.0"
