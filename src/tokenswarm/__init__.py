"""tokenswarm: distributed load testing for LLM serving engines, on Locust.

Subpackages: :mod:`tokenswarm.simengine` (the embedded simulated engine),
:mod:`tokenswarm.dialects` (API stream formats), :mod:`tokenswarm.report`
(levels, tables, plots), :mod:`tokenswarm.loadgen` (Locust users; the only
part importing locust/gevent). Top-level modules own one thing each:
metrics, client, settings, options, engines, records, runfolder, cli.
"""

__version__ = "0.1.0"
