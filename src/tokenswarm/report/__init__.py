"""Reports: turn a run folder's raw files into levels.csv, report.md and friends.

Pure pandas/numpy; runs anywhere, no locust. ``tokenswarm report DIR``
calls :func:`build`, which rebuilds every derived file from the raw ones.
"""

from tokenswarm.report.build import ReportError, build, summary_text

__all__ = ["ReportError", "build", "summary_text"]
