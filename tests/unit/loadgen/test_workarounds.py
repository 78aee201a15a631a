"""Every Locust workaround (tokenswarm.loadgen.workarounds), checked on the installed Locust. Each runs in a
separate process: importing Locust needs gevent's monkey patching."""

from textwrap import dedent

import pytest

from procs import MASTER_AND_WORKER, locust_child

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


def test_every_workaround_finds_what_it_needs_on_the_installed_locusts_real_classes(tmp_path):
    # Real Locust objects, not stand-ins: a master and a worker connected over loopback, a web UI, a stats CSV
    # writer. A renamed internal makes a workaround's guard switch it off; this test then fails instead.
    res = run(MASTER_AND_WORKER + dedent(f"""
        import json
        from locust import stats, argument_parser
        from locust.runners import STATE_MISSING
        states = w.worker_states(master)
        cid = next(iter(states), "")
        sent = w.report_to_master(worker, "boom from a worker", "tb")
        for _ in range(100):
            if master.exceptions:
                break
            gevent.sleep(0.05)
        web = menv.create_web_ui("127.0.0.1", 0)
        endpoints = {{r.endpoint for r in web.app.url_map.iter_rules()}}
        csv_writer = stats.StatsCSVFileWriter(menv, stats.PERCENTILES_TO_REPORT, {str(tmp_path / "l")!r})
        logged = w.log_outside_total(menv.stats, "TTFT", "LLM", 12.0)
        out = {{
            "guards": {{
                "default_args_dict": w.applies(argument_parser, "default_args_dict"),
                "worker._send_stats": w.applies(worker, "_send_stats"),
                "worker.client": w.applies(worker, "client"),
                "csv._stats_history_data_rows": w.applies(csv_writer, "_stats_history_data_rows"),
                "master.worker_indexes": w.applies(master, "worker_indexes"),
                "master.clients": w.applies(master, "clients"),
                "master.server": w.applies(master, "server"),
                "master.greenlet": w.applies(master, "greenlet"),
                "master.handle_message": w.applies(master, "handle_message"),
                "master.quit": w.applies(master, "quit"),
                "hub.parent.throw": w.applies(gevent.get_hub().parent, "throw"),
                "web.update_template_args": w.applies(web, "update_template_args"),
                "web.app": w.applies(web, "app"),
            }},
            "states": list(states.values()), "missing": STATE_MISSING == w.MISSING,
            "index": w.worker_index(master, cid), "host": w.worker_host(cid) == socket.gethostname(),
            "exception_sent": sent, "exceptions": [e["msg"] for e in master.exceptions.values()],
            "endpoints": sorted(e for e in (w.START_ENDPOINT, w.INDEX_ENDPOINT, w.STATS_ENDPOINT) if e in endpoints),
            "logged": [logged, menv.stats.get("TTFT", "LLM").num_requests, menv.stats.total.num_requests],
            "installed": [w.before_start(web, lambda form: None), w.extend_pages(web, "", list, "k")],
        }}
        worker.quit()
        master.quit()
        print(json.dumps(out))
    """))
    assert all(res["guards"].values()), {k: v for k, v in res["guards"].items() if not v}
    assert res["states"] == ["ready"] and res["missing"] and res["index"] == 0 and res["host"]
    assert res["exception_sent"] and res["exceptions"] == ["boom from a worker"]
    assert res["endpoints"] == sorted(["locust.swarm", "locust.index", "locust.request_stats"])
    assert res["logged"] == [True, 1, 0]  # a TTFT sample, outside Locust's total
    assert res["installed"] == [True, True]


def test_stopping_now_cancels_and_restores_the_stop_timeout():
    res = run("""
        import json
        from locust import User, constant, task
        from locust.env import Environment
        from tokenswarm.loadgen import workarounds as w
        class U(User):
            wait_time = constant(1)
            @task
            def t(self): pass
        env = Environment(user_classes=[U], stop_timeout=30)
        runner = env.create_local_runner()
        seen = []
        orig = runner.stop
        runner.stop = lambda: (seen.append(env.stop_timeout), orig())
        w.stop_now(env)
        after = env.stop_timeout
        w.cancel_at_stop(env)
        print(json.dumps({"during": seen, "after": after, "cancel": env.stop_timeout}))
    """)
    assert res == {"during": [0], "after": 30, "cancel": 0}


def test_locusts_spawn_rate_warning_is_left_out_and_other_warnings_stay():
    # the real runner's warning at 200 users a second (what a sweep's level of 200 asks), then another warning
    res = run("""
        import json, logging
        from locust import User, constant, task
        from locust.env import Environment
        from tokenswarm.loadgen import workarounds as w

        class U(User):
            wait_time = constant(1)
            @task
            def t(self): pass

        seen = []
        class Keep(logging.Handler):
            def emit(self, record):
                seen.append(record.getMessage())
        logging.getLogger("locust.runners").addHandler(Keep())
        runner = Environment(user_classes=[U]).create_local_runner()
        runner.start(1, 200, wait=False)
        before = list(seen)
        w.quiet_spawn_rate_warning()
        w.quiet_spawn_rate_warning()  # once is enough; twice adds no second filter
        runner.start(1, 200, wait=False)
        logging.getLogger("locust.runners").warning("another warning")
        runner.quit()
        filters = len(logging.getLogger("locust.runners").filters)
        print(json.dumps({"before": before, "after": seen[len(before):], "filters": filters}))
    """)
    assert any(m.startswith("Your selected spawn rate is very high") for m in res["before"]), res
    assert not any("spawn rate is very high" in m for m in res["after"]) and "another warning" in res["after"]
    assert res["filters"] == 1
