"""Reports: turn a run folder's raw files into levels.csv, summary.json, report.md, report.html and plots.

Pure pandas/numpy/matplotlib; runs anywhere, no locust or gevent.
``tokenswarm report DIR`` calls :func:`build_report`, which rebuilds every derived
file from the raw ones (requests.csv and run.json, or Locust's CSV files);
``tokenswarm compare DIR DIR...`` calls :func:`compare`. The modules by job:
numbers per level (:mod:`~tokenswarm.report.levels`, from requests.csv;
:mod:`~tokenswarm.report.locustcsv`, from Locust's files), the run's analysis
(:mod:`~tokenswarm.report.analysis`, with :mod:`~tokenswarm.report.saturation`,
:mod:`~tokenswarm.report.engine` for the engine's scraped /metrics,
:mod:`~tokenswarm.report.selfcheck`, :mod:`~tokenswarm.report.workloads`),
words and tables (:mod:`~tokenswarm.report.compose`,
:mod:`~tokenswarm.report.tables`, :mod:`~tokenswarm.report.document`), plots
(:mod:`~tokenswarm.report.plots`), files read and written
(:mod:`~tokenswarm.report.readers`, :mod:`~tokenswarm.report.build`).
"""

from tokenswarm.report.analysis import Analysis, analyse
from tokenswarm.report.build import build_report
from tokenswarm.report.compare import CompareResult, compare
from tokenswarm.report.compose import summary_text
from tokenswarm.report.errors import ReportError

__all__ = ["Analysis", "CompareResult", "ReportError", "analyse", "build_report", "compare", "summary_text"]
