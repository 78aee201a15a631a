"""Every Locust workaround (tokenswarm.loadgen.workarounds), checked on the installed Locust. Each runs in a
separate process: importing Locust needs gevent's monkey patching."""

import pytest

from procs import locust_child

run = locust_child


def test_the_installed_locust_is_one_the_workarounds_were_checked_on():
    # a Locust outside CHECKED fails here: look at every workaround again, then add its version
    res = run("""
        import json, locust
        from tokenswarm.loadgen import workarounds as w
        print(json.dumps({"v": list(w.locust_version()), "checked": sorted(map(list, w.CHECKED)),
                          "supported": [list(x) for x in w.SUPPORTED]}))
    """)
    assert res["v"] in res["checked"], f"Locust {res['v']} is not among the checked versions {res['checked']}"
    lo, hi = res["supported"]
    assert lo <= res["v"] < hi


def test_a_workaround_stays_off_outside_the_supported_versions_or_without_its_attribute():
    res = run("""
        import json
        from tokenswarm.loadgen import workarounds as w
        class Runner:
            worker_indexes = {"a": 3}
        print(json.dumps({"old": w.applies(Runner(), "worker_indexes", (2, 39)),
                          "new": w.applies(Runner(), "worker_indexes", (2, 50)),
                          "ok": w.applies(Runner(), "worker_indexes", (2, 47)),
                          "missing": w.applies(Runner(), "clients", (2, 47)),
                          "index": w.worker_index(Runner(), "a"), "no_index": w.worker_index(object(), "a"),
                          "parse": [list(w.locust_version("2.47.0")), list(w.locust_version("dev"))]}))
    """)
    assert res == {"old": False, "new": False, "ok": True, "missing": False, "index": 3, "no_index": None,
                   "parse": [[2, 47], [0, 0]]}


def test_a_worker_builds_locusts_default_arguments_once():
    # Locust's worker called default_args_dict() (a full parser build) once per option on each spawn message
    res = run("""
        import json
        from locust import argument_parser
        calls = []
        real = argument_parser.default_args_dict
        def counting():
            calls.append(1)
            return real()
        argument_parser.default_args_dict = counting
        from tokenswarm.loadgen import workarounds
        on = workarounds.cache_default_args()
        workarounds.cache_default_args()  # idempotent: no second wrapper
        first = argument_parser.default_args_dict()
        options = {k: None for k in list(first) + ["engine", "max_tokens"]}
        custom = {k for k in options if k not in argument_parser.default_args_dict()}  # as the worker does
        print(json.dumps({"on": on, "builds": len(calls), "custom": sorted(custom), "same": first == real()}))
    """)
    assert res["on"]
    assert res["builds"] == 1  # built once, whatever the number of options and calls
    assert res["custom"] == ["engine", "max_tokens"]  # still tells tokenswarm's options from Locust's
    assert res["same"]


def test_the_last_stats_history_row_is_written_and_a_worker_sends_its_stats_now(tmp_path):
    res = run(f"""
        import json, time
        from locust import User, task, constant
        from locust.env import Environment
        from locust import stats
        from tokenswarm.loadgen import workarounds
        class U(User):
            wait_time = constant(1)
            @task
            def t(self): pass
        env = Environment(user_classes=[U])
        env.create_local_runner()
        env.stats.log_request("GET", "/x", 12, 0)
        w = stats.StatsCSVFileWriter(env, stats.PERCENTILES_TO_REPORT, {str(tmp_path / "l")!r}, full_history=True)
        wrote = workarounds.write_last_history_row(w, time.time())
        w.close_files()
        rows = open({str(tmp_path / "l_stats_history.csv")!r}).read().splitlines()
        class Worker:
            sent = 0
            def _send_stats(self): Worker.sent += 1
        class Gone:
            def _send_stats(self): raise OSError("the master is gone")
        print(json.dumps({{"wrote": wrote, "rows": len(rows), "sent": [workarounds.send_stats_now(Worker()),
                           Worker.sent, workarounds.send_stats_now(Gone()), workarounds.send_stats_now(object())]}}))
    """)
    assert res["wrote"] and res["rows"] >= 2  # the header and the row for now
    assert res["sent"] == [True, 1, False, False]


def test_the_master_sees_each_worker_message_after_locust_handled_it_and_stops_watching_at_quit():
    res = run("""
        import json
        from tokenswarm.loadgen import workarounds
        seen, order = [], []
        class Msg:
            def __init__(self, t): self.type = t
        class Runner:
            def handle_message(self, cid, msg): order.append(("locust", msg.type))
            def quit(self): order.append(("quit", None))
        r = Runner()
        ok = workarounds.watch_master_messages(r, lambda cid, t: order.append(("watch", t)),
                                               lambda: order.append(("before_quit", None)))
        r.handle_message("w", Msg("client_ready"))
        r.quit()
        r.handle_message("w", Msg("quit"))  # after the quit: Locust's own handler only
        print(json.dumps({"ok": ok, "order": order}))
    """)
    assert res["ok"]
    assert res["order"] == [["locust", "client_ready"], ["watch", "client_ready"], ["before_quit", None],
                            ["quit", None], ["locust", "quit"]]


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit(130)"])
def test_an_interrupt_reaches_the_main_greenlet_where_locust_waits(exc):
    res = run(f"""
        import json, gevent
        from tokenswarm.loadgen import workarounds
        caught = []
        g = gevent.spawn_later(0.05, workarounds.interrupt_main, {exc})
        try:
            gevent.sleep(5)
        except BaseException as e:
            caught.append(type(e).__name__ + ":" + str(getattr(e, "code", "")))
        print(json.dumps({{"caught": caught}}))
    """)
    assert res["caught"] == [{"KeyboardInterrupt": "KeyboardInterrupt:", "SystemExit(130)": "SystemExit:130"}[exc]]


def test_the_runner_greenlet_check_tells_the_runners_own_greenlets_from_others():
    res = run("""
        import json, gevent
        from gevent.pool import Group
        from tokenswarm.loadgen import workarounds
        class Runner:
            greenlet = Group()
        r = Runner()
        inside = r.greenlet.spawn(lambda: workarounds.in_runner_greenlet(r))
        outside = gevent.spawn(lambda: workarounds.in_runner_greenlet(r))
        gevent.joinall([inside, outside])
        none = workarounds.in_runner_greenlet(object())
        print(json.dumps({"inside": inside.value, "outside": outside.value, "none": none}))
    """)
    assert res == {"inside": True, "outside": False, "none": False}
