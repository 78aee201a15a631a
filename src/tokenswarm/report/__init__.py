"""Reports: turn a run folder's raw files into levels.csv, summary.json, report.md, report.html and plots.

Pure pandas/numpy/matplotlib; runs anywhere, no locust or gevent.
``tokenswarm report DIR`` calls :func:`build`, which rebuilds every derived
file from the raw ones (requests.csv and run.json, or Locust's CSV files);
``tokenswarm compare DIR DIR...`` calls :func:`compare`.
"""

from tokenswarm.report.build import Analysis, analyse, build, summary_text
from tokenswarm.report.compare import CompareResult, compare
from tokenswarm.report.errors import ReportError

__all__ = ["Analysis", "CompareResult", "ReportError", "analyse", "build", "compare", "summary_text"]
