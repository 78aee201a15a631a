"""Load shapes (tokenswarm.loadgen.shapes): a shape steps its plan's levels by time and by finished requests,
tells the run when each begins and when the last is done, and checks the options ask for its kind of test.
In a child process: the shapes import Locust."""

from textwrap import dedent

from procs import locust_child

PRELUDE = dedent("""
    import json
    from tokenswarm.loadgen import shapes
    from tokenswarm.sweep import CONCURRENCY, RATE, SweepPlan

    class Clock:
        t = 1000.0
        def __call__(self): return self.t
    clock = Clock()
    shapes.time.monotonic = clock

    class Run:
        # the run controller as a shape sees it: levels begin, a level is over, the last level ends
        finished = False
        draining = False
        def __init__(self, verdicts=None):
            self.events, self.done, self.plan, self.level = [], {}, None, None
            self.verdicts = verdicts  # capacity: level -> "holds" / "fails"
            self.settings = type("S", (), {"resolution_pct": 5.0, "max_probes": 20})()
            self.levels = type("L", (), {"current": None})()
        def begin_level(self, i, level):
            self.events.append(["begin", i, level])
            self.level = level
            self.levels.current = {"level": level}
        def finished_at(self, level): return self.done.get(level, 0)
        def level_over(self, i, elapsed):
            if not self.plan.level_done(i, elapsed, self.finished_at(self.level)):
                return False
            if self.verdicts is not None:
                self.levels.current["verdict"] = self.verdicts(self.level)
            return True
        def end_of_levels(self):
            self.events.append(["end"])
            self.draining = True

    def attach(shape, run, plan):
        run.plan = plan
        shape.attach(run, plan)
""")


def test_a_concurrency_sweep_steps_by_time_and_by_finished_requests():
    res = locust_child(PRELUDE + dedent("""
        class Sweep(shapes.ConcurrencySweep):
            pass
        shape, run = Sweep(), Run()
        plan = SweepPlan(CONCURRENCY, [1, 4, 16], level_duration_s=10.0, level_requests=5)
        attach(shape, run, plan)
        ticks = [shape.tick()]
        clock.t += 9.9; ticks.append(shape.tick())      # level 1 still running
        clock.t += 0.1; ticks.append(shape.tick())      # its 10 s are up: level 4
        run.done[4] = 5; ticks.append(shape.tick())     # 5 of level 4's requests finished: level 16
        clock.t += 10; ticks.append(shape.tick())       # the last level done: the run drains
        ticks.append(shape.tick())                       # draining: the users stay until the run stops
        print(json.dumps({"ticks": ticks, "events": run.events, "index": shape.index}))
    """))
    assert res["ticks"] == [[1, 1.0], [1, 1.0], [4, 4.0], [16, 16.0], [16, 16.0], [16, 16.0]]
    assert res["events"] == [["begin", 0, 1], ["begin", 1, 4], ["begin", 2, 16], ["end"]]
    assert res["index"] == 2


def test_a_rate_sweep_runs_max_concurrency_users_at_every_level():
    res = locust_child(PRELUDE + dedent("""
        shape, run = shapes.SweepShape(), Run()
        attach(shape, run, SweepPlan(RATE, [0.5, 2.0], level_duration_s=5.0, max_concurrency=64))
        first = shape.tick()
        clock.t += 5; second = shape.tick()
        print(json.dumps({"ticks": [first, second], "events": run.events}))
    """))
    assert res["ticks"] == [[64, 64.0], [64, 64.0]]
    assert res["events"] == [["begin", 0, 0.5], ["begin", 1, 2.0]]


def test_class_attributes_are_option_defaults_and_a_shape_refuses_another_kind_of_test():
    res = locust_child(PRELUDE + dedent("""
        from argparse import Namespace
        from tokenswarm.options import namespace_defaults
        from tokenswarm.settings import SettingsError, from_options
        class Sweep(shapes.ConcurrencySweep):
            levels = "1,2,8"
            level_duration = "20s"
        class Rates(shapes.RateSweep):
            rates = "1,2"
        def problem(shape, **kw):
            try:
                shape.check(from_options(Namespace(**{**vars(namespace_defaults()), **kw}), environ={}))
            except SettingsError as e:
                return str(e)
            return None
        print(json.dumps({
            "defaults": Sweep.option_defaults(), "rates": Rates.option_defaults(),
            "ok": problem(Sweep(), levels="1,2", level_duration="5s"),
            "rates_to_levels_shape": problem(Sweep(), rates="1,2", level_duration="5s"),
            "one_level": problem(shapes.SweepShape(), duration="5s"),
            "any": problem(shapes.SweepShape(), rates="1", level_duration="5s"),
        }))
    """))
    assert res["defaults"] == {"levels": "1,2,8", "level_duration": "20s"}
    assert res["rates"] == {"rates": "1,2"}
    assert res["ok"] is None and res["any"] is None
    assert "Sweep takes --levels" in res["rates_to_levels_shape"] and "rate test" in res["rates_to_levels_shape"]
    assert "give --levels, --rates or --trace" in res["one_level"]


def test_a_capacity_search_probes_the_levels_its_verdicts_ask_for():
    res = locust_child(PRELUDE + dedent("""
        shape, run = shapes.SweepShape(), Run(verdicts=lambda level: "holds" if level <= 16 else "fails")
        attach(shape, run, SweepPlan(CONCURRENCY, [4, 64], level_duration_s=5.0, capacity=True))
        ticks = [shape.tick()]
        while not run.draining:
            clock.t += 5
            ticks.append(shape.tick())
        print(json.dumps({"levels": [e[2] for e in run.events if e[0] == "begin"], "last": run.events[-1],
                          "users": ticks[:3], "probes": [[p.level, p.verdict] for p in shape.search.probes]}))
    """))
    # doubling from the bracket's low end while the SLOs hold, then bisecting between 16 (holds) and 32 (fails)
    assert res["levels"] == [4, 8, 16, 32, 24, 20, 18, 17]
    assert res["last"] == ["end"] and res["users"] == [[4, 4.0], [8, 8.0], [16, 16.0]]
    assert res["probes"][-1] == [17, "fails"]


def test_a_rate_capacity_search_waits_for_a_failing_probes_requests_before_a_lower_one():
    # an open loop keeps sending while the server is behind: the lower probe began behind that backlog, and a
    # rate the engine serves failed (a search answered 19.4 req/s on an engine that serves 25 within the SLO)
    res = locust_child(PRELUDE + dedent("""
        class HoldingRun(Run):
            in_flight_ticks = 0
            def hold(self):
                self.events.append(["hold", self.level])
                self.in_flight_ticks = 3  # the requests in flight end over three ticks
            def hold_over(self):
                self.in_flight_ticks -= 1
                self.events.append(["waiting"] if self.in_flight_ticks > 0 else ["over"])
                return self.in_flight_ticks <= 0
        shape, run = shapes.SweepShape(), HoldingRun(verdicts=lambda level: "holds" if level <= 24 else "fails")
        attach(shape, run, SweepPlan(RATE, [10.0, 40.0], level_duration_s=5.0, capacity=True, max_concurrency=64))
        shape.tick()
        while not run.draining:
            clock.t += 5
            users = shape.tick()
            assert users == (64, 64.0), users  # the users stay: only their sends wait
        print(json.dumps({"events": run.events}))
    """))
    ev = [e[0] if e[0] != "begin" else e[2] for e in res["events"]]
    # up while the probes hold; each step down (after a failing probe) waits until the hold is over
    assert ev[:4] == [10.0, 20.0, 40.0, "hold"], ev
    assert ev[4:7] == ["waiting", "waiting", "over"] and ev[7] == 30.0, ev
    prev = ev[0]
    for before, e in zip(ev, ev[1:]):
        if isinstance(e, float):
            # a step down (after a failing probe) follows the end of a hold; a step up (after one that held) not
            assert (before == "over") == (e < prev), ev
            prev = e
    assert ev[-1] == "end"
