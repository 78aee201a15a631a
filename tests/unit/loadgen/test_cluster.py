"""The two ends of a distributed test (tokenswarm.loadgen.cluster) against a stand-in runner: grants, records,
drains, lost workers, in the typed messages they send; no Locust process, no network."""

from types import SimpleNamespace

from tokenswarm.loadgen.cluster import WorkerAgent, WorkerLedger
from tokenswarm.loadgen.messages import Drain, Drained, Grant, Lease, Records


class Runner:
    """What the ledger and the agent use of Locust's runners: the workers and their states, messages sent,
    worker indexes, the worker's statistics report."""

    def __init__(self, *ids: str) -> None:
        self.clients = {cid: SimpleNamespace(state="ready") for cid in ids}
        self.worker_indexes = {cid: i for i, cid in enumerate(ids)}
        self.sent: list[tuple[str, dict, str | None]] = []
        self.stats_sent = 0

    def send_message(self, kind: str, data: dict, client_id: str | None = None) -> None:
        self.sent.append((kind, data, client_id))

    def _send_stats(self) -> None:
        self.stats_sent += 1
        self.sent.append(("stats", {}, None))


def records(worker: str = "w0", rows: int = 0, sent: int = 0, in_flight: int = 0, final: bool = False) -> Records:
    return Records(worker=worker, host="h", pid=1, rows=[["x"]] * rows, selfcheck=[], sent=sent, in_flight=in_flight,
                   final=final)


def test_the_master_grants_no_more_than_the_request_budget_and_says_when_it_is_spent():
    r = Runner("a", "b")
    b = WorkerLedger(r, requests=5)
    b.on_lease("a", Lease(worker="w0", n=3))
    b.on_lease("b", Lease(worker="w1", n=3))
    b.on_lease("a", Lease(worker="w0", n=1))
    grants = [(Grant.from_data(d).n, Grant.from_data(d).exhausted, cid) for kind, d, cid in r.sent
              if kind == Grant.NAME]
    assert grants == [(3, False, "a"), (2, True, "b"), (0, True, "a")]
    assert b.remaining == 0 and [w["leased"] for w in b.public()] == [3, 2]
    assert [w["id"] for w in b.public()] == ["w0", "w1"]  # Locust's worker index names them


def test_without_a_budget_every_lease_is_granted_in_full():
    r = Runner("a")
    b = WorkerLedger(r)
    for n in (1, 7, 64):
        b.on_lease("a", Lease(worker="w0", n=n))
    assert [d["n"] for _, d, _ in r.sent] == [1, 7, 64] and b.workers["a"]["leased"] == 72


def test_the_budget_is_spent_once_every_grant_turned_into_a_record():
    r = Runner("a")
    b = WorkerLedger(r, requests=3)
    b.on_lease("a", Lease(worker="w0", n=3))
    assert not b.budget_spent()
    b.on_records("a", records(rows=2, sent=3, in_flight=1))
    assert not b.budget_spent()
    b.on_records("a", records(rows=1, sent=3))
    assert b.budget_spent()


def test_a_lost_worker_counts_what_it_was_granted_and_never_shipped_once():
    r = Runner("a", "b")
    b = WorkerLedger(r)
    b.on_lease("a", Lease(worker="w0", n=10))
    b.on_records("a", records(rows=6, sent=9, in_flight=3))
    assert b.check_lost() == []
    r.clients["a"].state = "missing"
    lost = b.check_lost()
    assert [w["id"] for w in lost] == ["w0"] and lost[0]["lost_in_flight"] == 4  # granted 10, shipped 6
    assert b.check_lost() == [] and b.lost_in_flight == 4  # recorded once
    assert b.alive() == ["b"]


def test_drained_and_awaited_workers():
    r = Runner("a", "b")
    b = WorkerLedger(r)
    b.start_drain()
    b.start_drain()
    assert [k for k, _, _ in r.sent] == [Drain.NAME]  # said once
    b.on_drained("a", Drained(worker="w0"))
    assert not b.all_drained() and b.awaiting_records() == ["b"]
    b.on_records("b", records("w1", final=True))
    assert b.awaiting_records() == []  # stopped with its final batch sent
    b.on_drained("b", Drained(worker="w1"))
    assert b.all_drained()
    assert b.wait_records(0.0) == []


def test_a_worker_ships_rows_with_its_counts_and_says_drained_after_its_statistics():
    r = Runner()
    counts = [5, 2]
    agent = WorkerAgent(r, "w3", lambda: tuple(counts))
    agent.add([["r1"], ["r2"]])
    agent.flush()
    kind, data, _ = r.sent[-1]
    msg = Records.from_data(data)
    assert kind == Records.NAME and msg.rows == [["r1"], ["r2"]] and (msg.sent, msg.in_flight) == (5, 2)
    assert msg.worker == "w3" and not msg.final
    agent.flush()  # nothing new, no heartbeat: no message
    assert len(r.sent) == 1
    counts[:] = [5, 0]
    agent.drained()
    assert [k for k, _, _ in r.sent] == [Records.NAME, "stats", Drained.NAME]  # Locust's statistics first
    agent.close()
    assert [k for k, _, _ in r.sent[-2:]] == ["stats", Records.NAME]  # before the final records the master awaits
    assert r.sent[-1][1]["final"] and r.stats_sent == 2 and agent.shipped == 2
