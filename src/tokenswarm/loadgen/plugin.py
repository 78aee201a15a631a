"""Wires tokenswarm into Locust's events: options, test start/stop, records, levels, exit code.

Importing :mod:`tokenswarm.loadgen` registers these listeners (the Locust
plugin pattern), so a locustfile that imports tokenswarm's users gets the
whole machinery: ``--engine`` and friends on the command line and in the web
UI, a run folder per test, requests.csv, run.json and the report.

Roles: the local runner has a :class:`Session` (users) and a
:class:`RunController` (writes); a master has only the controller, a worker
only a session whose rows are shipped to the master in batches.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.rpc import Message
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from tokenswarm import runfolder
from tokenswarm.datasets import open_dataset
from tokenswarm.exitstatus import ExitStatus
from tokenswarm.loadgen import lifecycle as _lifecycle  # noqa: F401  (joins, leaves and users, in the log)
from tokenswarm.loadgen.budget import LeasedBudget
from tokenswarm.loadgen.cluster import (
    MSG_ABORT,
    MSG_DRAIN,
    MSG_DRAINED,
    MSG_GRANT,
    MSG_LEASE,
    MSG_LEVEL,
    MSG_RECORDS,
    WorkerAgent,
)
from tokenswarm.loadgen.controller import RunController
from tokenswarm.loadgen.session import Session
from tokenswarm.options import add_options
from tokenswarm.preflight import PreflightError, check
from tokenswarm.settings import Settings, SettingsError, build, with_run_seed

log = logging.getLogger("tokenswarm")

@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add_options(parser, locust=True)


def _user_dialect(environment: Environment) -> str:
    names = {getattr(u, "dialect", "") for u in environment.user_classes}
    return names.pop() if len(names) == 1 else ""


def settings_for(environment: Environment, opts: argparse.Namespace | None = None, host: str | None = None
                 ) -> Settings:
    """Build the settings from the current options (the web UI may have changed them), or from ``opts`` and
    ``host`` (the web UI's start form, checked before Locust applies it)."""
    opts = environment.parsed_options if opts is None else opts
    if not opts.dialect and not opts.endpoint and _user_dialect(environment):
        opts = argparse.Namespace(**{**vars(opts), "dialect": _user_dialect(environment)})
    return build(opts, host=(environment.host if host is None else host) or None)


PREFLIGHT_MEMORY_S = 60.0  # a preflight the web UI's start check passed is trusted by the test start this long


def _preflight_key(settings: Settings) -> tuple[Any, ...]:
    """What a preflight's verdict depends on: the URL, the dialect, the model asked for, the headers."""
    return (settings.url, settings.dialect.name, settings.request.model, tuple(sorted(settings.headers.items())))


def remember_preflight(environment: Environment, settings: Settings, checked: Settings) -> None:
    """The web UI's start check passed the preflight for ``settings``: the test start that follows does not ask
    the server again, and takes the model ``checked`` found."""
    environment.tokenswarm_preflight = (_preflight_key(settings), checked.request.model, time.monotonic())


def preflight(environment: Environment, settings: Settings) -> Settings:
    """:func:`tokenswarm.preflight.check`, unless the web UI's start check just passed it for these settings."""
    memory = getattr(environment, "tokenswarm_preflight", None)
    environment.tokenswarm_preflight = None
    if memory is not None:
        key, model, at = memory
        if key == _preflight_key(settings) and time.monotonic() - at < PREFLIGHT_MEMORY_S:
            return replace(settings, request=replace(settings.request, model=model), model_from_server=False)
    return check(settings)


def dataset_problem(settings: Settings) -> None:
    """Load the tokenizer and read one prompt of a file dataset, so a bad file is a SettingsError now."""
    _tokenizer(settings)
    if settings.dataset.name != "random":
        open_dataset(settings.dataset, default_max_tokens=settings.request.max_tokens, max_prompts=1)


def _cache_default_args() -> None:
    """Locust 2.47's worker rebuilds and parses its whole argument parser once for every option the master
    sends, on every spawn message (``default_args_dict()`` inside a comprehension): with tokenswarm's
    options that blocked the event loop for 100-300 ms a spawn step, a stall every stream in flight saw.
    The defaults never change within a process, so build them once."""
    from locust import argument_parser

    build_defaults = argument_parser.default_args_dict
    if getattr(build_defaults, "tokenswarm_cached", False):
        return
    cached: dict[str, Any] = {}

    def default_args_dict() -> dict:
        if not cached:
            cached.update(build_defaults())
        return cached

    default_args_dict.tokenswarm_cached = True  # type: ignore[attr-defined]
    argument_parser.default_args_dict = default_args_dict


def _fail(environment: Environment, msg: str) -> None:
    """Bad input or a failed preflight: one line, exit code 2 (headless), or a stopped test (web UI), whose
    reason the web UI shows in its Exceptions tab and the tokenswarm tab."""
    headless = getattr(environment.parsed_options, "headless", False)
    if headless:
        print(f"tokenswarm: error: {msg}", file=sys.stderr, flush=True)  # said once, not again by the log
    else:
        log.error("tokenswarm: %s", msg)
    environment.process_exit_code = ExitStatus.BAD_INPUT
    runner = environment.runner
    _show_failure(environment, msg)
    if runner is not None:
        gevent.spawn(runner.quit if headless else runner.stop)


FAILED_START = "tokenswarm: the test could not start"  # the Exceptions tab's traceback column for such a line


def _show_failure(environment: Environment, msg: str) -> None:
    """Put a failed start where the web UI's user looks: Locust's Exceptions tab (a worker sends it to its
    master, as Locust does with its users' exceptions) and, on the master or the single process, the line
    above the tokenswarm tab's charts."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        try:
            runner.client.send(Message("exception", {"msg": msg, "traceback": FAILED_START}, runner.client_id))
        except Exception:  # the master is gone: the worker's own log line is all there is
            log.debug("tokenswarm: could not send the failure to the master:\n%s", traceback.format_exc())
        return
    if getattr(environment, "web_ui", None) is None or runner is None:
        return
    environment.tokenswarm_start_error = msg
    runner.log_exception("master" if isinstance(runner, MasterRunner) else "local", msg, FAILED_START)


@events.init.add_listener
def _init(environment: Environment, web_ui: Any = None, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None or not hasattr(opts, "engine"):
        return  # not started from a command line (library use without tokenswarm's options)
    if os.environ.get("TOKENSWARM_CLI") and not getattr(opts, "locust_tables", False):
        # `tokenswarm run/sweep` prints its own exact table last; Locust's rounded ones only on request
        logging.getLogger("locust.stats_logger").setLevel(logging.WARNING)
    if web_ui is not None and getattr(opts, "web_login", False):
        from tokenswarm.loadgen import weblogin

        weblogin.install(web_ui)
    if not isinstance(environment.runner, WorkerRunner):
        from tokenswarm.loadgen.observe import Exporter
        from tokenswarm.loadgen.webui import install_web_ui

        # the exporter costs CPU per request (histograms): made only when something can scrape it
        if web_ui is not None:
            environment.tokenswarm_exporter = Exporter(environment)
            install_web_ui(web_ui, environment)
        elif getattr(opts, "metrics_port", 0):
            environment.tokenswarm_exporter = Exporter(environment)
            environment.tokenswarm_exporter.serve("0.0.0.0", opts.metrics_port)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _cache_default_args()
    if not isinstance(runner, WorkerRunner):
        try:
            settings_for(environment)
        except SettingsError as e:
            print(f"tokenswarm: error: {e}", file=sys.stderr, flush=True)
            sys.exit(ExitStatus.BAD_INPUT)
    if not isinstance(runner, WorkerRunner):
        # added now, after the runner's own: quitting runs its listeners in reverse, so this one stops the
        # test (and collects the workers' last records) before a master's listener sends them "quit"
        environment.events.quitting.add_listener(_quitting)
        gevent.signal_handler(signal.SIGINT, _on_sigint, environment)
        # Locust installs its SIGTERM handler only once a headless start returns, which a sweep's shape never
        # does before the end: until then SIGTERM is handled like Ctrl-C. (Locust's handler replaces this one.)
        signal.signal(signal.SIGTERM, lambda _s, _f: gevent.spawn(_on_sigint, environment))
    if isinstance(runner, MasterRunner):
        runner.register_message(MSG_RECORDS, _master(lambda ctl, cid, d: ctl.on_worker_rows(cid, d)))
        runner.register_message(MSG_LEASE, _master(lambda ctl, cid, d: ctl.books.on_lease(cid, d)))
        runner.register_message(MSG_DRAINED, _master(lambda ctl, cid, d: ctl.books.on_drained(cid, d)))
    elif isinstance(runner, WorkerRunner):
        runner.register_message(MSG_LEVEL, _on_level)
        runner.register_message(MSG_GRANT, _worker(lambda agent, d: agent.on_grant(d)))
        runner.register_message(MSG_DRAIN, _worker(lambda agent, d: agent.on_drain()))
        runner.register_message(MSG_ABORT, _on_abort)


def _master(handler: Any) -> Any:
    def on_message(environment: Environment, msg: Any, **_kw: Any) -> None:
        ctl: RunController | None = getattr(environment, "tokenswarm_controller", None)
        if ctl is None or ctl.finished:
            rows = len(msg.data.get("rows", [])) if isinstance(msg.data, dict) else 0
            if rows:
                log.warning("tokenswarm: %d records from %s arrived with no test running; dropped", rows, msg.node_id)
            return
        handler(ctl, msg.node_id, msg.data)

    return on_message


def _worker(handler: Any) -> Any:
    def on_message(environment: Environment, msg: Any, **_kw: Any) -> None:
        agent: WorkerAgent | None = getattr(environment, "tokenswarm_agent", None)
        if agent is not None:
            handler(agent, msg.data)

    return on_message


def _on_abort(environment: Environment, msg: Any, **_kw: Any) -> None:
    environment.stop_timeout = 0  # the master was interrupted: the coming stop cancels requests in flight


def _on_level(environment: Environment, msg: Any, **_kw: Any) -> None:
    environment.tokenswarm_level = (msg.data["level"], msg.data.get("workers", 1), msg.data.get("start"))
    session: Session | None = getattr(environment, "tokenswarm_session", None)
    if session is not None:
        session.set_level(msg.data["level"], msg.data.get("workers", 1), msg.data.get("start"))


@events.test_start.add_listener
def _test_start(environment: Environment, **_kw: Any) -> None:
    opts = environment.parsed_options
    if opts is None or not hasattr(opts, "engine"):
        return
    runner = environment.runner
    environment.tokenswarm_session = None
    try:
        settings = settings_for(environment)
    except SettingsError as e:
        _fail(environment, str(e))
        return
    if isinstance(runner, WorkerRunner):
        worker = f"w{runner.worker_index}"
        agent = WorkerAgent(environment, worker)
        environment.tokenswarm_agent = agent
        shards = int(getattr(opts, "tokenswarm_shards", 1) or 1)
        try:
            session = _session(environment, settings, worker, max(runner.worker_index, 0), shards, agent.add,
                               LeasedBudget(agent.ask))
        except SettingsError as e:
            _fail(environment, str(e))
            return
        agent.session = session
        level, workers, start = getattr(environment, "tokenswarm_level", (runner.target_user_count, 1, None))
        session.set_level(level, workers, start)
        environment.tokenswarm_session = session
        return
    settings = with_run_seed(settings, opts)  # a fresh seed per test unless --seed; workers get it from opts
    if not getattr(opts, "no_preflight", False):
        try:
            settings = preflight(environment, settings)
        except PreflightError as e:
            _fail(environment, str(e))
            return
        opts.model = settings.request.model  # workers receive the resolved model with the spawn message
    try:
        run_dir = runfolder.make_run_dir(_out_dir(environment, opts.out), settings.engine.name, settings.run_name)
    except OSError as e:
        _fail(environment, f"cannot create the run folder: {e}")
        return
    dataset_books: dict[str, Any] | None = None  # records read, used, skipped by reason (file datasets)
    if isinstance(runner, MasterRunner):
        # every worker takes its own share of the dataset: worker i of n takes prompts i, i+n, ...
        opts.tokenswarm_shards = max(len(runner.clients), 1)
        try:
            _tokenizer(settings)
            if settings.dataset.name != "random":
                dataset_books = open_dataset(settings.dataset, default_max_tokens=settings.request.max_tokens,
                                             max_prompts=1).describe()
        except SettingsError as e:
            _fail(environment, str(e))
            return
    session = None
    if isinstance(runner, LocalRunner):
        try:
            session = _session(environment, settings, "local", 0, 1, lambda rows: ctl.add_rows(rows))
        except SettingsError as e:
            _fail(environment, str(e))
            return
    ctl = RunController(environment, settings, run_dir)
    environment.tokenswarm_controller = ctl
    environment.tokenswarm_start_error = None
    if session is not None:
        ctl.session = session
        environment.tokenswarm_session = session
        dataset_books = session.dataset_books()
    ctl.dataset_books = dataset_books
    ctl.start()


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(settings: Settings) -> Any:
    """The --tokenizer, loaded once per process (None without one)."""
    if not settings.tokenizer:
        return None
    if settings.tokenizer not in _TOKENIZERS:
        from tokenswarm.tokencount import load_tokenizer

        _TOKENIZERS[settings.tokenizer] = load_tokenizer(settings.tokenizer)
    return _TOKENIZERS[settings.tokenizer]


def _session(environment: Environment, settings: Settings, worker: str, shard: int, shards: int,
             sink: Any, budget: LeasedBudget | None = None) -> Session:
    """This process's session: its share of the dataset, the tokenizer; SettingsError for a bad file."""
    return Session(environment, settings, worker, shard=shard, sink=sink, shards=shards,
                   tokenizer=_tokenizer(settings), budget=budget)


def _out_dir(environment: Environment, out: str) -> str:
    """--out for the first test of this process; later tests (web UI) get a numbered sibling."""
    n = getattr(environment, "tokenswarm_tests", 0) + 1
    environment.tokenswarm_tests = n
    if not out or n == 1:
        return out
    return f"{out.rstrip('/')}-{n}"


@events.spawning_complete.add_listener
def _spawned(**_kw: Any) -> None:
    """Users are up: freeze what exists, so the collector's full passes during the run (measured here:
    20-65 ms with 256 users, a pause every stream would see as latency) skip these objects. No collection
    first: with requests in flight that would be the very pause this avoids."""
    gc.freeze()


@events.test_stopping.add_listener
def _test_stopping(environment: Environment, **_kw: Any) -> None:
    ctl: RunController | None = getattr(environment, "tokenswarm_controller", None)
    if ctl is not None:
        ctl.stopping()


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_kw: Any) -> None:
    agent: WorkerAgent | None = getattr(environment, "tokenswarm_agent", None)
    if agent is not None:
        agent.close()
        environment.tokenswarm_agent = None
    ctl: RunController | None = getattr(environment, "tokenswarm_controller", None)
    if ctl is not None:
        ctl.finish(complete=True)


def _quitting(environment: Environment, **_kw: Any) -> None:
    ctl: RunController | None = getattr(environment, "tokenswarm_controller", None)
    if ctl is None:
        return
    if not ctl.finished:
        # shutting down mid-test (Ctrl-C, SIGTERM): requests in flight are cancelled and recorded as such,
        # what was measured is written, run.json says "complete": false; a second Ctrl-C exits at once
        signal.signal(signal.SIGINT, _exit_now)
        if not ctl.interrupted:
            _interrupt(environment, ctl)
        runner = environment.runner
        if runner is not None:
            runner.stop()
        ctl.finish(complete=False)
    ctl.wait_done()  # finish() may be running in another greenlet (the stop that ended the test)
    if environment.process_exit_code is None or environment.process_exit_code == 0:
        environment.process_exit_code = ctl.exit_code()


def _exit_now(_sig: int, _frame: Any) -> None:
    os._exit(ExitStatus.INTERRUPTED)


def _on_sigint(environment: Environment) -> None:
    """Ctrl-C: note the interruption (so the test is recorded as incomplete and requests in flight are
    cancelled at the stop), then let Locust shut down as usual; a second Ctrl-C exits at once. Before any test
    started (a master still waiting for its workers) there is nothing to write: the workers that joined are
    told to quit and the process exits 130, without Locust's traceback."""
    ctl: RunController | None = getattr(environment, "tokenswarm_controller", None)
    runner = environment.runner
    if ctl is None and getattr(environment.parsed_options, "headless", False) and isinstance(runner, MasterRunner):
        print("tokenswarm: interrupted while waiting for workers; no test ran", file=sys.stderr, flush=True)
        runner.quit()
        gevent.get_hub().parent.throw(SystemExit(int(ExitStatus.INTERRUPTED)))
        return
    if ctl is not None and not ctl.finished:
        if ctl.interrupted:
            _exit_now(signal.SIGINT, None)
        _interrupt(environment, ctl)
    gevent.get_hub().parent.throw(KeyboardInterrupt)  # what Ctrl-C does to Locust's main greenlet


def _interrupt(environment: Environment, ctl: RunController) -> None:
    log.warning("tokenswarm: interrupted; writing what was measured (Ctrl-C again to exit at once)")
    ctl.interrupted = True
    environment.stop_timeout = 0
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(MSG_ABORT, {})
