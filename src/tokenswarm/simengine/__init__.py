"""The embedded simulated engine: an OpenAI-compatible streaming server for load tests.

``tokenswarm simengine`` serves it; :func:`serve` runs it in this process and
:class:`SimProcess` runs it in a child process (what ``tokenswarm run`` and
the tests use). It imports neither locust nor gevent.
"""

from tokenswarm.simengine.handler import SimConfig, SimEngine
from tokenswarm.simengine.process import SimExitError, SimProcess, serve
from tokenswarm.simengine.scheduler import BatchModel

__all__ = ["BatchModel", "SimConfig", "SimEngine", "SimExitError", "SimProcess", "serve"]
