"""Errors every layer shares: bad input is one line naming the option (or file, field) and the value."""

from __future__ import annotations


class SettingsError(ValueError):
    """Bad input: one line saying which option and value are wrong (exit code 2, no traceback)."""
