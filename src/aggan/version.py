"""The package's version: one place, read by the packaging (pyproject.toml) and by every file
that records which aggan wrote it."""

__version__ = "0.1.0"
