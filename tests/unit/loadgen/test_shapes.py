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
        finished = False
        draining = False
        def __init__(self): self.events, self.done = [], {}
        def begin_level(self, i, level): self.events.append(["begin", i, level])
        def finished_at(self, level): return self.done.get(level, 0)
        def end_of_levels(self):
            self.events.append(["end"])
            self.draining = True
""")


def test_a_concurrency_sweep_steps_by_time_and_by_finished_requests():
    res = locust_child(PRELUDE + dedent("""
        class Sweep(shapes.ConcurrencySweep):
            pass
        shape, run = Sweep(), Run()
        plan = SweepPlan(CONCURRENCY, [1, 4, 16], level_duration_s=10.0, level_requests=5)
        shape.attach(run, plan)
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
        shape.attach(run, SweepPlan(RATE, [0.5, 2.0], level_duration_s=5.0, max_concurrency=64))
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
