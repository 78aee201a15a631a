"""Every place tokenswarm leans on Locust's (or gevent's) internals, in one module.

Each function below says what Locust does, what that would do to a
measurement or a run, and how upstream could make the workaround unneeded.
Each is guarded: it acts only on a Locust in :data:`SUPPORTED` (the range
pyproject.toml allows) whose private attribute it needs is there; otherwise
Locust's plain behaviour stands (a debug line says so). :data:`CHECKED` lists
the versions each was checked on; tests/unit/loadgen/test_workarounds.py
checks every one on the installed Locust and fails on a version not in
CHECKED, the signal to look at them again.

The rest of tokenswarm uses Locust through its public API: events, custom
messages (``register_message``/``send_message``), ``LoadTestShape``, users,
the runner's ``start``/``stop``/``quit``, ``user_count`` and
``target_user_count``, ``worker_index``, the web UI's ``app``,
``template_args`` and ``auth_required_if_enabled``. Everything else it needs
of Locust is here, including what is public in practice but undocumented
(the master's table of workers, the client-id format, the web UI's endpoint
names and its statistics JSON): a change there breaks one tested function.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from functools import cache
from importlib import metadata
from typing import Any

import gevent

log = logging.getLogger("tokenswarm")

#: Locust versions (major, minor) every workaround here was checked on
CHECKED = frozenset({(2, 47)})
#: the Locust versions tokenswarm installs with (pyproject.toml): outside it no workaround acts
SUPPORTED = ((2, 40), (2, 50))


@cache
def installed_locust() -> str:
    """The installed Locust's version, read without importing it (importing Locust monkey-patches)."""
    try:
        return metadata.version("locust")
    except metadata.PackageNotFoundError:
        return ""


def locust_version(text: str | None = None) -> tuple[int, int]:
    """(major, minor) of ``text`` (default: the installed Locust's version); (0, 0) when unreadable."""
    parts = (text or installed_locust()).split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def applies(obj: Any, attr: str, version: tuple[int, int] | None = None) -> bool:
    """May a workaround touch ``obj.attr``: the Locust version is in :data:`SUPPORTED` and the attribute exists."""
    v = locust_version() if version is None else version
    ok = SUPPORTED[0] <= v < SUPPORTED[1] and obj is not None and hasattr(obj, attr)
    if not ok:
        log.debug("tokenswarm: Locust %s has no %s.%s as expected; that workaround is off", installed_locust(),
                  type(obj).__name__, attr)
    return ok


# -- measurement ---------------------------------------------------------------------------------
def cache_default_args() -> bool:
    """On a worker: build Locust's default arguments once per process. Returns whether the cache is on.

    Locust 2.47's worker rebuilds and parses its whole argument parser once for every option the master sends,
    on every spawn message (``argument_parser.default_args_dict()`` inside a comprehension in
    ``WorkerRunner.worker``): with tokenswarm's options that blocked the event loop for 100-300 ms a spawn step,
    a stall every stream in flight saw as latency. The defaults never change within a process.
    Upstream: compute ``default_args_dict()`` once before the comprehension (or cache it in the module)."""
    from locust import argument_parser

    if not applies(argument_parser, "default_args_dict"):
        return False
    build = argument_parser.default_args_dict
    if getattr(build, "tokenswarm_cached", False):
        return True
    cached: dict[str, Any] = {}

    def default_args_dict() -> dict:
        if not cached:
            cached.update(build())
        return cached

    default_args_dict.tokenswarm_cached = True  # type: ignore[attr-defined]
    argument_parser.default_args_dict = default_args_dict
    return True


def send_stats_now(runner: Any) -> bool:
    """On a worker: send Locust's statistics to the master now. Returns whether they were sent.

    A worker reports its statistics every 3 s, and after a stop (the web UI's, unlike a quit) not at all, so
    the master's locust_stats.csv would lack up to 3 s of requests. Called when the worker has drained and when
    its test stops, before the final records the master waits for.
    Upstream: send a last stats report on ``stop`` as on ``quit`` (``WorkerRunner._send_stats`` is private)."""
    if not applies(runner, "_send_stats"):
        return False
    try:
        runner._send_stats()
    except Exception:  # the master is gone: nothing can be reported to it
        log.debug("tokenswarm: could not send Locust's last statistics", exc_info=True)
        return False
    return True


def write_last_history_row(csv_writer: Any, now: float) -> bool:
    """Add the stats history's row for ``now`` (epoch s) before the CSV files are closed. Returns whether it did.

    ``StatsCSVFileWriter.stats_writer`` writes a history row every ``CSV_STATS_INTERVAL_SEC``; a test that ends
    between two lacks its last seconds in locust_stats_history.csv.
    Upstream: a public ``write_history_row()`` (today ``_stats_history_data_rows``)."""
    if not applies(csv_writer, "_stats_history_data_rows"):
        return False
    try:
        csv_writer._stats_history_data_rows(csv_writer.stats_history_csv_writer, now)
    except Exception:  # the history simply lacks its last row
        log.debug("tokenswarm: could not write the last stats history row", exc_info=True)
        return False
    return True


def log_outside_total(stats: Any, name: str, request_type: str, value_ms: float) -> bool:
    """Add ``value_ms`` to Locust's statistics row ``name`` of ``request_type`` without counting a request in
    the total (TTFT and TPOT rows beside each request's one E2E event). Returns whether it was logged.
    Upstream: a documented way to log a sample outside the total (``StatsEntry.log`` is undocumented)."""
    entry = stats.get(name, request_type)
    if not applies(entry, "log"):
        return False
    entry.log(value_ms, 0)
    return True


# -- stopping ------------------------------------------------------------------------------------
def stop_now(environment: Any) -> None:
    """Stop the test at once: users' requests in flight are cancelled rather than awaited for
    ``--stop-timeout`` (Locust stops users gracefully for ``environment.stop_timeout`` s), then the timeout
    the user set stands again. Upstream: ``runner.stop(timeout=0)``."""
    runner = environment.runner
    if runner is None:
        return
    saved, environment.stop_timeout = environment.stop_timeout, 0
    try:
        runner.stop()
    finally:
        environment.stop_timeout = saved


def cancel_at_stop(environment: Any) -> None:
    """The coming stop (whoever asks for it: the web UI, the master, Ctrl-C) cancels requests in flight at once.
    Upstream: as :func:`stop_now`."""
    environment.stop_timeout = 0


# -- the master's workers -------------------------------------------------------------------------
MISSING = "missing"  # Locust's STATE_MISSING: a worker whose heartbeats stopped


def worker_states(runner: Any) -> dict[str, str]:
    """The master's workers now: Locust client id -> state (:data:`MISSING` for one whose heartbeats stopped).
    Upstream: ``MasterRunner.clients`` and ``WorkerNode.state`` are undocumented."""
    if not applies(runner, "clients"):
        return {}
    return {cid: str(node.state) for cid, node in list(runner.clients.items())}


def worker_host(client_id: str) -> str:
    """The host name in a Locust client id (``<hostname>_<uuid hex>``; Locust's format, undocumented)."""
    return client_id.rsplit("_", 1)[0] if "_" in client_id else client_id


def report_to_master(runner: Any, msg: str, traceback_text: str) -> bool:
    """On a worker: put ``msg`` in the master's Exceptions tab (Locust's own ``exception`` message, which it
    sends for a user's exception). Returns whether it was sent.
    Upstream: a public ``runner.log_exception`` on workers that forwards to the master."""
    if not applies(runner, "client"):
        return False
    from locust.rpc import Message

    try:
        runner.client.send(Message("exception", {"msg": msg, "traceback": traceback_text}, runner.client_id))
    except Exception:  # the master is gone: the worker's own log line is all there is
        log.debug("tokenswarm: could not send the failure to the master", exc_info=True)
        return False
    return True


def worker_index(runner: Any, client_id: str) -> int | None:
    """The index Locust gave a worker (``w0``, ``w1``... in requests.csv and run.json), None when unknown.
    Upstream: ``MasterRunner.worker_indexes`` is public in practice but undocumented."""
    if not applies(runner, "worker_indexes"):
        return None
    return runner.worker_indexes.get(client_id)


def stop_workers(runner: Any) -> bool:
    """On a master: send every worker Locust's stop message, as ``MasterRunner.stop`` does. Returns whether
    it was sent.

    Locust 2.47 ends a headless shape's test by ``MasterRunner.quit()``, whose ``stop(send_stop_to_client=False)``
    fires ``test_stop`` before any worker has stopped: after Ctrl-C in a sweep the workers' requests in flight
    were never cancelled nor recorded (the master then sends "quit"). Upstream: let ``quit()`` stop the workers
    (and wait for them) before it fires ``test_stop``."""
    if not applies(runner, "clients") or not applies(runner, "server"):
        return False
    from locust.rpc import Message

    for client in runner.clients.all:
        runner.server.send_to_client(Message("stop", None, client.id))
    return True


def in_runner_greenlet(runner: Any) -> bool:
    """Is the current greenlet one of the runner's own (its message listener among them)? Waiting there for
    a worker's message would wait for what that very greenlet has to receive.
    Upstream: nothing to fix; ``Runner.greenlet`` is an undocumented attribute."""
    if not applies(runner, "greenlet"):
        return False
    return gevent.getcurrent() in runner.greenlet


def watch_master_messages(runner: Any, on_message: Callable[[str, str], None], before_quit: Callable[[], None]
                          ) -> bool:
    """On a master: call ``on_message(client_id, type)`` after the runner handled each worker message (joins,
    leaves), and ``before_quit()`` before it sends every worker away. Returns whether it is installed.
    Upstream: events for a worker joining and leaving (today only ``worker_connect``, and no leave)."""
    if not (applies(runner, "handle_message") and applies(runner, "quit")):
        return False
    handle, quit_all = runner.handle_message, runner.quit

    def handle_and_watch(client_id: str, msg: Any) -> None:
        handle(client_id, msg)
        on_message(client_id, msg.type)

    def quit_and_watch_no_more() -> None:
        before_quit()
        runner.handle_message = handle
        quit_all()

    runner.handle_message = handle_and_watch
    runner.quit = quit_and_watch_no_more
    return True


# -- shutdown ------------------------------------------------------------------------------------
def interrupt_main(exc: BaseException | type[BaseException]) -> bool:
    """Raise ``exc`` in the main greenlet, where Locust's ``main()`` waits: ``KeyboardInterrupt`` is what
    Ctrl-C does to it (Locust then shuts down as usual), ``SystemExit(n)`` ends the process with ``n``.
    Used from tokenswarm's SIGINT handler, which must run first (to mark the test incomplete) and then hand
    Locust the Ctrl-C it would have had. Upstream: a ``shutdown_requested`` event before Locust's own handling."""
    parent = getattr(gevent.get_hub(), "parent", None)
    if parent is None or not applies(parent, "throw"):
        return False
    parent.throw(exc)
    return True


def sigterm_like_sigint(handler: Callable[[], None]) -> None:
    """Until Locust installs its own SIGTERM handler, SIGTERM runs ``handler`` in a greenlet (as Ctrl-C).

    Locust installs its SIGTERM handler only once a headless start returns, which a sweep's shape never does
    before the end: until then SIGTERM would kill the process without its outputs. The handler is a raw
    ``signal`` one (gevent's must not replace Locust's later); it only spawns a greenlet, which runs once the
    loop is back. Upstream: install the SIGTERM handler before the headless start."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: gevent.spawn(handler))


# -- the console ---------------------------------------------------------------------------------
#: the start of the warning Locust's runners log when users start faster than 100 a second
SPAWN_RATE_WARNING = "Your selected spawn rate is very high"


class _NoSpawnRateWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(SPAWN_RATE_WARNING)


def quiet_spawn_rate_warning() -> bool:
    """Leave out Locust's "Your selected spawn rate is very high (>100)" warning. Returns whether it is off.

    Locust 2.47's ``Runner.start`` (and the master's, per worker) logs it whenever users start faster than 100 a
    second. tokenswarm starts each level's users within a second on purpose (a sweep's shape, and ``run``'s
    default spawn rate of all users at once) and staggers their first sends itself, so every sweep above 100
    users printed a warning about nothing. Upstream: warn only for a spawn rate the user typed, not a shape's."""
    logger = logging.getLogger("locust.runners")
    if not any(isinstance(f, _NoSpawnRateWarning) for f in logger.filters):
        logger.addFilter(_NoSpawnRateWarning())
    return True


# -- the web UI ----------------------------------------------------------------------------------
def form_fields_in_order(web_ui: Any, fields: Callable[[dict[str, Any]], dict[str, Any]]) -> bool:
    """The start form shows ``fields(extra_options)`` in the order given. Returns whether it is installed.

    Locust's page serializes ``template_args`` with Flask's ``tojson``, which sorts keys: the form's custom
    fields would show in alphabetical order of their option names. tokenswarm keeps their declared order
    (target, workload, sweep) and rewrites them each time Locust rebuilds its template arguments.
    Upstream: keep ``extra_options`` a list, or serialize with ``sort_keys=False``."""
    if not applies(web_ui, "update_template_args"):
        return False
    web_ui.app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    update = web_ui.update_template_args

    def update_and_order() -> None:
        update()
        args = web_ui.template_args
        args["extra_options"] = fields(args.get("extra_options") or {})

    web_ui.update_template_args = update_and_order
    return True


#: the Flask endpoints of Locust's web UI that tokenswarm extends (undocumented names)
START_ENDPOINT = "locust.swarm"  # POST /swarm: the start form
INDEX_ENDPOINT = "locust.index"  # GET /: the page
STATS_ENDPOINT = "locust.request_stats"  # GET /stats/requests: the tables' data, every 2 s


def before_start(web_ui: Any, check: Callable[[Any], Any]) -> bool:
    """Call ``check(form)`` before Locust's start view handles a POSTed start form; a non-None answer (a Flask
    response) is sent instead. Returns whether it is installed. Upstream: a ``test_start_requested`` event
    that may refuse the start with a message."""
    from flask import request

    if not applies(web_ui, "app"):
        return False

    @web_ui.app.before_request
    def _before_start() -> Any:
        if request.method != "POST" or request.endpoint != START_ENDPOINT:
            return None
        return check(request.form)

    return True


def extend_pages(web_ui: Any, script_tag: str, table_rows: Callable[[], list[dict[str, Any]]], key: str) -> bool:
    """Add ``script_tag`` to the web UI's page, and ``table_rows()`` to each statistics answer as the extended
    table ``key`` (which ``template_args["extendedTables"]`` declares). Returns whether it is installed.
    Upstream: documented hooks for the page's scripts and for extended tables' data."""
    import json

    from flask import request

    if not applies(web_ui, "app"):
        return False

    @web_ui.app.after_request
    def _extend(response: Any) -> Any:
        if response.status_code != 200:
            return response
        if request.endpoint == INDEX_ENDPOINT and response.mimetype == "text/html":
            html = response.get_data(as_text=True)
            response.set_data(html.replace("</body>", script_tag + "</body>", 1))
        elif request.endpoint == STATS_ENDPOINT:
            data = response.get_json(silent=True)
            if isinstance(data, dict):
                data["extended_stats"] = [{"key": key, "data": table_rows()}]
                response.set_data(json.dumps(data))
        return response

    return True
