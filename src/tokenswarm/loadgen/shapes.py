"""Load shapes: the sweep, a Locust ``LoadTestShape`` stepping through levels.

The shape is small on purpose: each tick asks the run's controller
(:meth:`RunController.sweep_tick`), which owns the plan (``--levels`` or
``--rates``, ``--level-duration``, ``--level-requests``), the level timeline,
and the clean ending (no new requests, those in flight finish). Headless, in
the web UI (the user count steps as levels advance) and on a master with
workers alike.
"""

from __future__ import annotations

from locust import LoadTestShape

from tokenswarm.loadgen import plugin as _plugin  # noqa: F401  (registers tokenswarm's Locust listeners)
from tokenswarm.settings import SettingsError


class SweepShape(LoadTestShape):
    """Concurrency or request-rate sweep driven by tokenswarm's options.

    Levels come from ``--levels 1,2,4,...`` (users, closed loop) or ``--rates``
    (requests/s, open loop with ``--max-concurrency`` users); each level ends by
    ``--level-duration`` and/or ``--level-requests``.
    """

    use_common_options = True  # the web UI keeps the user/spawn-rate fields (ignored) and tokenswarm's options

    def tick(self) -> tuple[int, float] | None:
        env = self.runner.environment if self.runner is not None else None
        if env is None:
            return None
        ctl = getattr(env, "tokenswarm_controller", None)
        if ctl is not None and not ctl.finished:
            return ctl.sweep_tick()
        # the first tick of a test comes before its controller exists: start with the first level
        from tokenswarm.loadgen.plugin import settings_for

        try:
            plan = settings_for(env).plan
        except SettingsError:
            plan = None
        if plan is None:
            return (1, 1.0)  # the test start will report the problem and stop
        users = plan.users(0)
        return users, float(max(users, 1))
