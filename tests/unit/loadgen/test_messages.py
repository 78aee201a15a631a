"""The master <-> worker messages (tokenswarm.loadgen.messages): every kind round-trips, and a payload that does not
fit its schema is refused in one line naming the message and the field."""

import pytest

from tokenswarm.loadgen import messages
from tokenswarm.loadgen.messages import (
    ALL,
    PROTOCOL_VERSION,
    Abort,
    BadMessage,
    Drain,
    Drained,
    Grant,
    Lease,
    Level,
    Records,
    RunSettings,
    SettingsWanted,
)

SAMPLES = {
    RunSettings: RunSettings(settings={"version": 1, "settings": {"seed": 3}}, shards=2),
    Level: Level(level=8.0, workers=2, start=1765000000.25),
    Grant: Grant(n=3, exhausted=False),
    Drain: Drain(),
    Abort: Abort(),
    Records: Records(worker="w0", host="h", pid=12, rows=[["a", "ok"]], selfcheck=[[1.0, "w0", 5.0, 0.1, 0.2]],
                     sent=4, in_flight=1, final=True),
    Lease: Lease(worker="w1", n=64),
    Drained: Drained(worker="w1"),
    SettingsWanted: SettingsWanted(worker="w2"),
}


def test_every_kind_has_a_sample_and_a_name_of_its_own():
    assert set(SAMPLES) == set(ALL)
    names = [k.NAME for k in ALL]
    assert len(set(names)) == len(names) and all(n.startswith("tokenswarm_") for n in names)


@pytest.mark.parametrize("kind", ALL, ids=lambda k: k.__name__)
def test_every_kind_round_trips_through_msgpack(kind):
    msgpack = pytest.importorskip("msgpack")  # what Locust's RPC packs messages with
    sample = SAMPLES[kind]
    data = msgpack.unpackb(msgpack.packb(sample.to_data()), raw=False)
    assert data["v"] == PROTOCOL_VERSION
    assert kind.from_data(data) == sample


def test_a_payload_that_does_not_fit_is_refused_naming_the_field():
    data = SAMPLES[Level].to_data()
    with pytest.raises(BadMessage, match="tokenswarm_level: field 'workers' is missing"):
        Level.from_data({k: v for k, v in data.items() if k != "workers"})
    with pytest.raises(BadMessage, match="tokenswarm_level: field 'level' is str"):
        Level.from_data({**data, "level": "8"})
    with pytest.raises(BadMessage, match="field 'n' is bool"):
        Grant.from_data({**SAMPLES[Grant].to_data(), "n": True})  # a bool is no count
    with pytest.raises(BadMessage, match="unknown field.*extra"):
        Drain.from_data({**SAMPLES[Drain].to_data(), "extra": 1})
    with pytest.raises(BadMessage, match="protocol version 0, this process speaks"):
        Drain.from_data({"v": 0})
    with pytest.raises(BadMessage, match="not an object"):
        Drain.from_data(None)
    assert Level.from_data({**data, "level": 8}).level == 8  # an int is a fine float


class Runner:
    def __init__(self):
        self.sent, self.handlers = [], {}

    def send_message(self, kind, data, client_id=None):
        self.sent.append((kind, data, client_id))

    def register_message(self, kind, listener):
        self.handlers[kind] = listener


def test_send_and_on_speak_locusts_custom_messages():
    class Msg:
        def __init__(self, data, node_id):
            self.data, self.node_id = data, node_id

    r = Runner()
    got, refused = [], []
    messages.on(r, Lease, lambda m, sender: got.append((m, sender)), refused.append)
    messages.send(r, SAMPLES[Lease])
    messages.send(r, SAMPLES[Grant], client_id="c1")
    assert [(k, c) for k, _, c in r.sent] == [(Lease.NAME, None), (Grant.NAME, "c1")]
    r.handlers[Lease.NAME](environment=None, msg=Msg(r.sent[0][1], "c9"))
    r.handlers[Lease.NAME](environment=None, msg=Msg({"v": PROTOCOL_VERSION, "worker": "w"}, "c9"))
    assert got == [(SAMPLES[Lease], "c9")] and refused == ["tokenswarm_lease: field 'n' is missing"]
