"""A process's swarm (tokenswarm.loadgen.swarm): its request budget, the requests it counts in flight, the
strategy that paces its sends, the stamps on finished records and where their rows go. In a child process: it
uses Locust's statistics."""

from textwrap import dedent

from procs import locust_child

PRELUDE = dedent("""
    import json
    from argparse import Namespace
    from locust.env import Environment
    from tokenswarm.loadgen.swarm import Swarm
    from tokenswarm.measure import RequestRecord
    from tokenswarm.options import namespace_defaults
    from tokenswarm.settings import from_options

    def settings(**kw):
        return from_options(Namespace(**{**vars(namespace_defaults()), "host": "", **kw}), host="http://127.0.0.1:9",
                     environ={})

    env = Environment(user_classes=[])
    env.create_local_runner()
    rows = []
""")


def test_the_request_budget_in_flight_count_and_stamped_rows():
    res = locust_child(PRELUDE + dedent("""
        s = Swarm(env, settings(requests=3, input_len=8, max_tokens=4), "local", shard=0, sink=rows.extend)
        tickets = [s.take_ticket() for _ in range(4)]

        class Call:
            def run(self):
                seen.append(s.in_flight)
                return RequestRecord("r", 0.0, ttft_ms=5.0, tpot_ms=1.0, e2e_ms=9.0, output_tokens=4)
        seen = []
        rec = s.run(Call())
        prompt = next(s.calls.prompts)
        s.records.finish(rec, user=7, prompt=prompt, level=16)
        s.close()
        cols = __import__("tokenswarm.requestscsv", fromlist=["COLUMNS"]).COLUMNS
        row = dict(zip(cols, rows[0]))
        print(json.dumps({"tickets": tickets, "exhausted": s.exhausted, "in_flight_during": seen,
                          "after": [s.in_flight, s.started, s.records.finished], "row": {k: row[k] for k in
                          ("worker", "user", "level", "status")}, "locust": env.stats.total.num_requests}))
    """))
    assert res["tickets"] == [True, True, True, False] and res["exhausted"]
    assert res["in_flight_during"] == [1] and res["after"] == [0, 1, 1]
    assert res["row"] == {"worker": "local", "user": "7", "level": "16", "status": "ok"}
    assert res["locust"] == 1  # one request event per request


def test_stopping_gives_back_an_unused_ticket_and_wakes_waiters():
    res = locust_child(PRELUDE + dedent("""
        import gevent
        s = Swarm(env, settings(rates="1000", level_duration="5s"), "w0", shard=0, sink=rows.extend)
        waiting = gevent.spawn(s.next_send)  # no schedule yet: it waits
        gevent.sleep(0.1)
        s.set_level(2.0)  # 2 req/s: the first send is now
        first = waiting.get(timeout=2)
        late = gevent.spawn(s.next_send)  # the next one is about half a second away
        gevent.sleep(0.01)
        s.stop_sending()
        print(json.dumps({"first": first is not None and first[1] is None, "late": late.get(timeout=2),
                          "ticket": s.take_ticket()}))
    """))
    assert res == {"first": True, "late": None, "ticket": False}


def test_a_hold_keeps_an_open_loops_sends_waiting_even_on_a_swarm_that_starts_during_it():
    # level 0 (a capacity search waits for a failing rate probe's requests): sends wait for the next level. A
    # worker that joined during the hold once took level 0 as "no strategy": a closed loop sending back to back
    res = locust_child(PRELUDE + dedent("""
        import gevent
        s = Swarm(env, settings(rates="1000", level_duration="5s"), "w0", shard=0, sink=rows.extend)
        s.set_level(0, 2, 0.0)  # its first word from the master: the hold
        fresh = [s.open_loop, s.held]
        waiting = gevent.spawn(s.next_send)
        gevent.sleep(0.3)
        during = waiting.ready()
        s.set_level(500.0, 2, 0.0)  # the next probe: 250 req/s here
        first = waiting.get(timeout=2)
        after = [s.open_loop, s.held, s.level]
        s.set_level(0, 2, 0.0)  # a hold while running: the next send waits again
        again = gevent.spawn(s.next_send)
        gevent.sleep(0.3)
        print(json.dumps({"fresh": fresh, "during": during, "first": first is not None, "after": after,
                          "again": again.ready(), "held": [s.held, s.level]}))
        again.kill()
    """))
    assert res["fresh"] == [True, True] and res["during"] is False  # no send during the hold
    assert res["first"] and res["after"] == [True, False, 500.0]
    assert res["again"] is False and res["held"] == [True, 0]
