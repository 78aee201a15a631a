"""The one exception of the report package: a run folder or file that cannot be reported on.

Every module of :mod:`tokenswarm.report` raises :class:`ReportError` (a
``ValueError``) for bad input, with a message that names the folder or file,
the field and the value that were wrong, so the CLI can print it as one line.
"""

from __future__ import annotations


class ReportError(ValueError):
    """A run folder that cannot be reported on (missing, unreadable or malformed files)."""
