"""What a master and its workers say to each other: one typed message per kind, its schema in one place.

Every message rides Locust's custom messages (``runner.send_message`` / ``register_message``, Locust's
public API). Each kind below is a dataclass: its fields are its payload, :meth:`Message.to_data` is what is
sent, :meth:`Message.from_data` checks what arrived (every field there, of its type; nothing unknown) and
raises :class:`BadMessage` otherwise. The payload carries :data:`PROTOCOL_VERSION`: a process of another
tokenswarm is refused in one line rather than misread. tests/unit/loadgen/test_messages.py round-trips
every kind.

Master -> workers:

* :class:`RunSettings`: the run's settings, built once (:func:`tokenswarm.settings.to_wire`), and how many
  workers share the dataset; sent at each test start (before Locust's spawn message) and to a worker that
  asks (:class:`SettingsWanted`: it joined after the start).
* :class:`Level`: new requests belong to ``level``, which began at epoch ``start`` (the master's clock); in
  rate mode each of ``workers`` workers sends its share.
* :class:`Grant`: the answer to a :class:`Lease`: ``n`` requests may be sent; ``exhausted``: no more.
* :class:`Drain`: the test is ending: no new requests; say :class:`Drained` once those in flight are done.
* :class:`Abort`: the master was interrupted: the stop that follows cancels requests in flight.

Workers -> master:

* :class:`Records`: finished request rows (requests.csv's columns), self-check samples, and the worker's
  counts (requests started, in flight), every second and at the stop (``final``).
* :class:`Lease`: may ``n`` requests be sent? A worker sends none the master has not granted
  (:class:`tokenswarm.loadgen.budget.LeasedBudget`), so a worker lost at any moment is accounted for exactly.
* :class:`Drained`, :class:`SettingsWanted`.

No Locust import: a runner is anything with ``send_message`` and ``register_message``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

#: the layout of every message below; a message of another version is refused
PROTOCOL_VERSION = 1
_VERSION_KEY = "v"


class BadMessage(ValueError):
    """A message that does not fit its schema (a field missing or of the wrong type, an unknown field, another
    protocol version); the text names the message and the field."""


M = TypeVar("M", bound="Message")


@dataclass
class Message:
    """A message kind: ``NAME`` is Locust's message type; the dataclass fields are the payload."""

    NAME: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The payload as sent: the fields, and the protocol version."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data[_VERSION_KEY] = PROTOCOL_VERSION
        return data

    @classmethod
    def from_data(cls: type[M], data: Any) -> M:
        """The message from a payload as received. :class:`BadMessage` when it does not fit."""
        if not isinstance(data, dict):
            raise BadMessage(f"{cls.NAME}: the payload is {type(data).__name__}, not an object")
        version = data.get(_VERSION_KEY)
        if version != PROTOCOL_VERSION:
            raise BadMessage(f"{cls.NAME}: protocol version {version!r}, this process speaks {PROTOCOL_VERSION} "
                             "(run one tokenswarm version on the master and every worker)")
        hints = _hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {_VERSION_KEY}
        if unknown:
            raise BadMessage(f"{cls.NAME}: unknown field(s) {', '.join(sorted(unknown))}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise BadMessage(f"{cls.NAME}: field {f.name!r} is missing")
            value = data[f.name]
            if not _fits(hints[f.name], value):
                raise BadMessage(f"{cls.NAME}: field {f.name!r} is {type(value).__name__} {value!r:.60}, "
                                 f"not {hints[f.name]}")
            values[f.name] = value
        return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(tp: Any, value: Any) -> bool:
    """Does ``value`` (as msgpack returns it) fit the annotation ``tp``? Containers are checked one level."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


# -- master -> workers -------------------------------------------------------------------------------
@dataclass
class RunSettings(Message):
    """The run's settings (:func:`tokenswarm.settings.to_wire`) and the workers sharing its dataset."""

    NAME: ClassVar[str] = "tokenswarm_settings"
    settings: dict[str, Any]
    shards: int


@dataclass
class Level(Message):
    """New requests belong to ``level`` (users, or req/s), begun at epoch ``start`` on the master's clock;
    ``workers`` share it (rate mode: each sends ``level / workers`` req/s). Level 0 holds an open loop: no new
    sends until the next level (:meth:`tokenswarm.loadgen.swarm.Swarm.set_level`)."""

    NAME: ClassVar[str] = "tokenswarm_level"
    level: float
    workers: int
    start: float


@dataclass
class Grant(Message):
    """``n`` more requests may be sent; ``exhausted``: the master will grant no more (``--requests`` spent)."""

    NAME: ClassVar[str] = "tokenswarm_grant"
    n: int
    exhausted: bool


@dataclass
class Drain(Message):
    """The test is ending: send no new request; say :class:`Drained` once every request in flight is done."""

    NAME: ClassVar[str] = "tokenswarm_drain"


@dataclass
class Abort(Message):
    """The master was interrupted: the stop that follows cancels requests in flight (recorded ``cancelled``)."""

    NAME: ClassVar[str] = "tokenswarm_abort"


# -- workers -> master -------------------------------------------------------------------------------
@dataclass
class Records(Message):
    """Finished request rows (requests.csv's columns, as strings), self-check samples
    (:data:`tokenswarm.selfcheck.CSV_COLUMNS` each), and the worker's counts: requests it ``sent`` (started)
    and ``in_flight`` now. ``final``: the last batch of the test."""

    NAME: ClassVar[str] = "tokenswarm_records"
    worker: str
    host: str
    pid: int
    rows: list[list[str]]
    selfcheck: list[list[Any]]
    sent: int
    in_flight: int
    final: bool = False


@dataclass
class Lease(Message):
    """May ``n`` requests be sent (users of ``worker`` waiting to send)?"""

    NAME: ClassVar[str] = "tokenswarm_lease"
    worker: str
    n: int


@dataclass
class Drained(Message):
    """Every request ``worker`` started has finished and its record was shipped."""

    NAME: ClassVar[str] = "tokenswarm_drained"
    worker: str


@dataclass
class SettingsWanted(Message):
    """``worker`` is starting users and has not received this test's :class:`RunSettings` (it joined late)."""

    NAME: ClassVar[str] = "tokenswarm_settings_wanted"
    worker: str


ALL: tuple[type[Message], ...] = (RunSettings, Level, Grant, Drain, Abort, Records, Lease, Drained, SettingsWanted)


# -- sending and receiving ---------------------------------------------------------------------------
def send(runner: Any, message: Message, client_id: str | None = None) -> None:
    """Send ``message`` through Locust's runner (a master: to every worker, or to ``client_id`` alone)."""
    if client_id is None:
        runner.send_message(message.NAME, message.to_data())
    else:
        runner.send_message(message.NAME, message.to_data(), client_id=client_id)


def on(runner: Any, kind: type[M], handler: Callable[[M, str], None],
       bad: Callable[[str], None] | None = None) -> None:
    """Call ``handler(message, sender id)`` for each message of ``kind`` the runner receives; one that does not
    fit its schema goes to ``bad(one line)`` instead (default: dropped)."""

    def receive(environment: Any = None, msg: Any = None, **_kw: Any) -> None:
        try:
            message = kind.from_data(getattr(msg, "data", None))
        except BadMessage as e:
            if bad is not None:
                bad(str(e))
            return
        handler(message, getattr(msg, "node_id", "") or "")

    runner.register_message(kind.NAME, receive)


__all__ = [c.__name__ for c in ALL] + ["ALL", "PROTOCOL_VERSION", "BadMessage", "Message", "on", "send"]
