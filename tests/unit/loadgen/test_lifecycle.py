"""What a master says of its workers (tokenswarm.loadgen.lifecycle), on the installed Locust, in a child
process (importing Locust needs gevent's monkey patching)."""

from textwrap import dedent

from procs import MASTER_AND_WORKER, locust_child


def test_a_worker_that_joined_before_the_watch_is_announced_once():
    # the compose test with 4 containers once read 3 joins: w0's ready message came before the watch existed
    res = locust_child(MASTER_AND_WORKER + dedent("""
        import contextlib, io, json
        from tokenswarm.loadgen.lifecycle import WorkerWatch
        before = len(w.worker_states(master))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            watch = WorkerWatch(menv, master)
            gevent.sleep(0.5)  # the watch's loop and any later message: no second line for the same worker
        watch.stop()
        worker.quit()
        master.quit()
        print(json.dumps({"before": before, "said": err.getvalue().splitlines()}))
    """))
    assert res["before"] == 1
    assert len(res["said"]) == 1 and res["said"][0].startswith("tokenswarm: worker w0 joined from "), res["said"]
    assert res["said"][0].endswith("; 1 connected"), res["said"]
