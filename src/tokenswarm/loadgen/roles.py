"""tokenswarm's part of each Locust process: one object per role, made once when Locust starts.

Locust runs a process as one of three runners (local, master, worker); tokenswarm does the same:

* :class:`LocalRole`, a single process: its own users (a :class:`Session`) and its run folder (a
  :class:`RunController`, the only writer).
* :class:`MasterRole`: the run folder and its workers' books (:class:`MasterBooks`: records shipped,
  request grants, drains, lost workers); no users.
* :class:`WorkerRole`: users (a :class:`Session`) whose records go to the master (a
  :class:`WorkerAgent`), every request granted by the master first (a :class:`LeasedBudget`).

:mod:`tokenswarm.loadgen.plugin` makes the role at Locust's ``init`` and forwards the test's events to it;
users, load shapes and the web UI reach it as ``environment.tokenswarm``, the one attribute tokenswarm
sets on Locust's environment. Each role owns its state; nothing else holds a session, a controller or
an agent.

Settings are built once per test: at ``init`` from Locust's parsed options on a local process or a master
(bad input ends the process there, exit 2), replaced only by the web UI's start check when its form
changes them; a worker builds them at each test's start from the options its master sent with the spawn
message (:mod:`tokenswarm.options`: tokenswarm's options are Locust's custom arguments, which Locust
forwards to its workers).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from typing import Any, ClassVar

import gevent
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from tokenswarm import runfolder
from tokenswarm.datasets import open_dataset
from tokenswarm.exitstatus import ExitStatus
from tokenswarm.loadgen import workarounds
from tokenswarm.loadgen.budget import LeasedBudget
from tokenswarm.loadgen.cluster import (
    MSG_ABORT,
    MSG_DRAIN,
    MSG_DRAINED,
    MSG_GRANT,
    MSG_LEASE,
    MSG_LEVEL,
    MSG_RECORDS,
    MasterBooks,
    WorkerAgent,
)
from tokenswarm.loadgen.controller import RunController
from tokenswarm.loadgen.lifecycle import UserWatch, WorkerWatch
from tokenswarm.loadgen.session import Session
from tokenswarm.loadgen.shapes import LevelShape
from tokenswarm.options import BY_DEST
from tokenswarm.preflight import PreflightError, check
from tokenswarm.settings import Settings, SettingsError, build, with_run_seed, with_trace
from tokenswarm.sweep import SweepPlan

log = logging.getLogger("tokenswarm")

PREFLIGHT_MEMORY_S = 60.0  # a preflight the web UI's start check passed is trusted by the test start this long
FAILED_START = "tokenswarm: the test could not start"  # the Exceptions tab's traceback column for such a line

_TOKENIZERS: dict[str, Any] = {}


def tokenizer_of(settings: Settings) -> Any:
    """The ``--tokenizer``, loaded once per process (None without one). SettingsError when unreadable."""
    if not settings.tokenizer:
        return None
    if settings.tokenizer not in _TOKENIZERS:
        from tokenswarm.tokencount import load_tokenizer

        _TOKENIZERS[settings.tokenizer] = load_tokenizer(settings.tokenizer)
    return _TOKENIZERS[settings.tokenizer]


def dataset_problem(settings: Settings) -> dict[str, Any] | None:
    """Load the tokenizer and read one prompt of a file dataset, so a bad file is a SettingsError now. Returns
    the file dataset's books (records read, used, skipped by reason), None for generated prompts."""
    tokenizer_of(settings)
    if settings.dataset.name == "random":
        return None
    return open_dataset(settings.dataset, default_max_tokens=settings.request.max_tokens, max_prompts=1).describe()


class Role:
    """What every role has: the environment, the settings of the test, its session (roles with users) and
    its run controller (roles that write)."""

    name: ClassVar[str] = ""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        self.opts: argparse.Namespace = environment.parsed_options
        self.runner = environment.runner
        self.headless = bool(getattr(self.opts, "headless", False))
        self.settings: Settings | None = None
        self.session: Session | None = None
        self.run: RunController | None = None
        self.start_error: str | None = None  # why the last test could not start (the web UI shows it)

    # -- settings ----------------------------------------------------------------------------------
    def build_settings(self, opts: argparse.Namespace | None = None, host: str | None = None) -> Settings:
        """Settings from ``opts`` (default: Locust's parsed options) and ``host`` (default: Locust's), with the
        locustfile's defaults: its user class's dialect, its load shape's class attributes (each used where
        the option was left at its default). SettingsError for bad input."""
        opts = self.opts if opts is None else opts
        values = vars(opts)
        changed: dict[str, Any] = {}
        dialects = {getattr(u, "dialect", "") for u in self.env.user_classes}
        if not values.get("dialect") and not values.get("endpoint") and len(dialects) == 1 and "" not in dialects:
            changed["dialect"] = dialects.pop()
        shape = self.env.shape_class
        if isinstance(shape, LevelShape):
            shape.check_options(values)
            for dest, value in shape.option_defaults().items():
                if dest in BY_DEST and values.get(dest) == BY_DEST[dest].default:
                    changed[dest] = value
        if changed:
            opts = argparse.Namespace(**{**values, **changed})
        settings = build(opts, host=(self.env.host if host is None else host) or None)
        if isinstance(shape, LevelShape):
            shape.check(settings)
        return settings

    def plan(self) -> SweepPlan | None:
        """The sweep plan of the settings built (None: one level, or settings that could not be built)."""
        return self.settings.plan if self.settings is not None else None

    # -- Locust's events (plugin.py forwards them) ---------------------------------------------------
    def test_start(self) -> None:
        raise NotImplementedError

    def test_stopping(self) -> None:
        pass

    def test_stop(self) -> None:
        pass

    def quitting(self) -> None:
        pass

    # -- failing ------------------------------------------------------------------------------------
    def fail(self, msg: str) -> None:
        """Bad input or a failed preflight: one line, exit code 2 (headless), or a stopped test (web UI), whose
        reason the web UI shows in its Exceptions tab and the tokenswarm tab."""
        if self.headless:
            print(f"tokenswarm: error: {msg}", file=sys.stderr, flush=True)  # said once, not again by the log
        else:
            log.error("tokenswarm: %s", msg)
        self.env.process_exit_code = ExitStatus.BAD_INPUT
        self.show_failure(msg)
        if self.runner is not None:
            gevent.spawn(self.runner.quit if self.headless else self.runner.stop)

    def show_failure(self, msg: str) -> None:
        """Put a failed start where the web UI's user looks: Locust's Exceptions tab and the line above the
        tokenswarm tab's charts."""
        if getattr(self.env, "web_ui", None) is None or self.runner is None:
            return
        self.start_error = msg
        self.runner.log_exception(self.name, msg, FAILED_START)


class WorkerRole(Role):
    """A worker: users whose records go to the master; every request granted by the master first."""

    name = "worker"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        runner = self.runner
        self.worker = f"w{runner.worker_index}" if runner.worker_index >= 0 else runner.client_id
        self.agent: WorkerAgent | None = None
        self.budget: LeasedBudget | None = None
        self.level: tuple[float, int, float | None] | None = None  # (level, workers, start) as the master said
        self.watch = UserWatch(runner, self.worker)
        environment.events.quitting.add_listener(lambda **_kw: self.quitting())
        workarounds.cache_default_args()
        runner.register_message(MSG_LEVEL, self._on_level)
        runner.register_message(MSG_GRANT, self._on_grant)
        runner.register_message(MSG_DRAIN, self._on_drain)
        runner.register_message(MSG_ABORT, self._on_abort)

    def test_start(self) -> None:
        runner = self.runner
        self.session = None
        try:
            self.settings = settings = self.build_settings()  # the options the master sent with this test
            agent = WorkerAgent(runner, self.worker, self._books)
            budget = LeasedBudget(agent.ask)
            shards = max(int(getattr(self.opts, "worker_shards", 1) or 1), 1)
            session = Session(self.env, settings, self.worker, shard=max(runner.worker_index, 0), shards=shards,
                              sink=agent.add, tokenizer=tokenizer_of(settings), budget=budget)
        except SettingsError as e:
            self.fail(str(e))
            return
        self.agent, self.budget, self.session = agent, budget, session
        level, workers, start = self.level or (runner.target_user_count, 1, None)
        session.set_level(level, workers, start)

    def _books(self) -> tuple[int, int]:
        s = self.session
        return (s.sent_started, s.in_flight) if s is not None else (0, 0)

    def test_stop(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def quitting(self) -> None:
        self.watch.stop()

    def show_failure(self, msg: str) -> None:
        """A worker sends its failure to the master's Exceptions tab, as Locust does with its users' exceptions."""
        try:
            self.runner.client.send(Message("exception", {"msg": msg, "traceback": FAILED_START},
                                            self.runner.client_id))
        except Exception:  # the master is gone: the worker's own log line is all there is
            log.debug("tokenswarm: could not send the failure to the master:\n%s", traceback.format_exc())

    # -- the master's messages -----------------------------------------------------------------------
    def _on_level(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        self.level = (msg.data["level"], msg.data.get("workers", 1), msg.data.get("start"))
        if self.session is not None:
            self.session.set_level(*self.level)

    def _on_grant(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        if self.budget is not None:
            self.budget.on_grant(int(msg.data["n"]), bool(msg.data.get("exhausted")))

    def _on_drain(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        session, agent = self.session, self.agent
        if session is None or agent is None:
            self.runner.send_message(MSG_DRAINED, {"worker": self.worker})
            return
        session.stop_sending()
        gevent.spawn(self._drained_when_idle, session, agent)

    def _drained_when_idle(self, session: Session, agent: WorkerAgent) -> None:
        while session.in_flight > 0:
            gevent.sleep(0.05)
        session.flush()
        agent.drained()

    def _on_abort(self, environment: Environment, msg: Any, **_kw: Any) -> None:
        environment.stop_timeout = 0  # the master was interrupted: the coming stop cancels requests in flight


class WriterRole(Role):
    """A role that writes the run folder (local process or master): settings built at init, the preflight,
    the run controller, tokenswarm's Prometheus exporter, Ctrl-C and SIGTERM."""

    def __init__(self, environment: Environment, web_ui: Any = None) -> None:
        super().__init__(environment)
        self.tests = 0  # tests started in this process (the web UI may start several)
        self.checked: tuple[Settings, float] | None = None  # settings the web UI's start check passed, and when
        self.exporter = None
        if web_ui is not None or getattr(self.opts, "metrics_port", 0):
            from tokenswarm.loadgen.exporter import Exporter

            # the exporter costs CPU per request (histograms): made only when something can scrape it
            self.exporter = Exporter(environment)
            if web_ui is None:
                self.exporter.serve("0.0.0.0", self.opts.metrics_port)
        try:
            self.settings = self.build_settings()
            if self.settings.trace:
                self.settings = with_trace(self.settings)
        except SettingsError as e:
            print(f"tokenswarm: error: {e}", file=sys.stderr, flush=True)
            sys.exit(ExitStatus.BAD_INPUT)
        # added now, after the runner's own: quitting runs its listeners in reverse, so this one stops the
        # test (and collects the workers' last records) before a master's listener sends them "quit"
        environment.events.quitting.add_listener(lambda **_kw: self.quitting())
        gevent.signal_handler(signal.SIGINT, self.sigint)
        workarounds.sigterm_like_sigint(self.sigint)

    # -- the web UI's start check --------------------------------------------------------------------
    def accept(self, settings: Settings, checked: Settings | None) -> None:
        """The web UI's start form asked for ``settings`` and they passed its check (the preflight's answer
        ``checked``, None without a preflight): the test start that follows takes them as they are."""
        if checked is not None:
            settings = replace(settings, request=replace(settings.request, model=checked.request.model),
                               model_from_server=False)
        self.checked = (settings, time.monotonic()) if checked is not None else None
        self.settings = settings

    def _settings_for_test(self) -> tuple[Settings, bool]:
        """(settings, preflight passed already): what the web UI's check passed a moment ago, else the settings
        built at init (headless), else built from the options Locust's web UI applied."""
        checked, self.checked = self.checked, None
        if checked is not None and time.monotonic() - checked[1] < PREFLIGHT_MEMORY_S:
            return checked[0], True
        if not self.headless or self.settings is None:
            settings = self.build_settings()
            return (with_trace(settings) if settings.trace else settings), False
        return self.settings, False

    # -- the test ------------------------------------------------------------------------------------
    def test_start(self) -> None:
        self.session = None
        opts = self.opts
        try:
            settings, checked = self._settings_for_test()
        except SettingsError as e:
            self.fail(str(e))
            return
        settings = with_run_seed(settings, opts)  # a fresh seed per test unless --seed; workers get it from opts
        if not checked and not getattr(opts, "no_preflight", False):
            try:
                settings = check(settings)
            except PreflightError as e:
                self.fail(str(e))
                return
        opts.model = settings.request.model  # workers receive the resolved model with the spawn message
        self.tests += 1
        try:
            run_dir = runfolder.make_run_dir(self._out_dir(opts.out), settings.engine.name, settings.run_name)
        except OSError as e:
            self.fail(f"cannot create the run folder: {e}")
            return
        try:
            run = self.start_run(settings, run_dir)
        except SettingsError as e:
            runfolder.remove_if_unused(run_dir)
            self.fail(str(e))
            return
        self.run = run
        self.start_error = None
        shape = self.env.shape_class
        if settings.plan is not None:
            if not isinstance(shape, LevelShape):
                self.fail("--levels, --rates and --trace step through levels: use a locustfile with "
                          "tokenswarm's SweepShape (tokenswarm sweep does)")
                return
            run.start()
            shape.attach(run, settings.plan)
        else:
            run.start()

    def start_run(self, settings: Settings, run_dir: str) -> RunController:
        raise NotImplementedError

    def _out_dir(self, out: str) -> str:
        """--out for the first test of this process; later tests (web UI) get a numbered sibling."""
        if not out or self.tests == 1:
            return out
        return f"{out.rstrip('/')}-{self.tests}"

    def test_stopping(self) -> None:
        if self.run is not None:
            self.run.stopping()

    def test_stop(self) -> None:
        if self.run is not None:
            self.run.finish(complete=True)

    def quitting(self) -> None:
        run = self.run
        if run is None:
            return
        if not run.finished:
            # shutting down mid-test (Ctrl-C, SIGTERM): requests in flight are cancelled and recorded as such,
            # what was measured is written, run.json says "complete": false; a second Ctrl-C exits at once
            signal.signal(signal.SIGINT, lambda _s, _f: os._exit(ExitStatus.INTERRUPTED))
            if not run.interrupted:
                self.interrupt(run)
            if self.runner is not None:
                self.runner.stop()
            run.finish(complete=False)
        run.wait_done()  # finish() may be running in another greenlet (the stop that ended the test)
        if self.env.process_exit_code is None or self.env.process_exit_code == 0:
            self.env.process_exit_code = run.exit_code()

    def sigint(self) -> None:
        """Ctrl-C: note the interruption (so the test is recorded as incomplete and requests in flight are
        cancelled at the stop), then let Locust shut down as usual; a second Ctrl-C exits at once."""
        run = self.run
        if run is not None and not run.finished:
            if run.interrupted:
                os._exit(ExitStatus.INTERRUPTED)
            self.interrupt(run)
        workarounds.interrupt_main(KeyboardInterrupt)  # what Ctrl-C does to Locust's main greenlet

    def interrupt(self, run: RunController) -> None:
        log.warning("tokenswarm: interrupted; writing what was measured (Ctrl-C again to exit at once)")
        run.interrupted = True
        self.env.stop_timeout = 0


class LocalRole(WriterRole):
    """A single process: its own users and its run folder."""

    name = "local"

    def start_run(self, settings: Settings, run_dir: str) -> RunController:
        session = Session(self.env, settings, "local", shard=0, shards=1, sink=self._add_rows,
                          tokenizer=tokenizer_of(settings))
        self.session = session
        return RunController(self.env, settings, run_dir, session=session, exporter=self.exporter,
                             dataset_books=session.dataset_books())

    def _add_rows(self, rows: list[Any]) -> None:
        """The session's finished rows, to the run folder of the test in progress."""
        if self.run is not None:
            self.run.add_rows(rows)


class MasterRole(WriterRole):
    """A master: the run folder and the books of its workers; no users of its own."""

    name = "master"

    def __init__(self, environment: Environment, web_ui: Any = None) -> None:
        super().__init__(environment, web_ui)
        runner = self.runner
        self.watch = WorkerWatch(environment, runner)
        runner.register_message(MSG_RECORDS, self._for_run(lambda run, cid, d: run.on_worker_rows(cid, d)))
        runner.register_message(MSG_LEASE, self._for_run(lambda run, cid, d: run.books.on_lease(cid, d)))
        runner.register_message(MSG_DRAINED, self._for_run(lambda run, cid, d: run.books.on_drained(cid, d)))

    def start_run(self, settings: Settings, run_dir: str) -> RunController:
        # every worker takes its own share of the dataset: worker i of n takes prompts i, i+n, ...
        self.opts.worker_shards = max(len(self.runner.clients), 1)
        dataset_books = dataset_problem(settings)
        return RunController(self.env, settings, run_dir, books=MasterBooks(self.env, settings.requests),
                             exporter=self.exporter, dataset_books=dataset_books)

    def _for_run(self, handler: Any) -> Any:
        def on_message(environment: Environment, msg: Any, **_kw: Any) -> None:
            run = self.run
            if run is None or run.finished:
                rows = len(msg.data.get("rows", [])) if isinstance(msg.data, dict) else 0
                if rows:
                    log.warning("tokenswarm: %d records from %s arrived with no test running; dropped", rows,
                                msg.node_id)
                return
            handler(run, msg.node_id, msg.data)

        return on_message

    def quitting(self) -> None:
        super().quitting()
        self.watch.stop()

    def sigint(self) -> None:
        """Ctrl-C before any test started (a master still waiting for its workers): nothing to write; the
        workers that joined are told to quit and the process exits 130, without Locust's traceback."""
        if self.run is None and self.headless:
            print("tokenswarm: interrupted while waiting for workers; no test ran", file=sys.stderr, flush=True)
            self.runner.quit()
            workarounds.interrupt_main(SystemExit(int(ExitStatus.INTERRUPTED)))
            return
        super().sigint()

    def interrupt(self, run: RunController) -> None:
        super().interrupt(run)
        self.runner.send_message(MSG_ABORT, {})


def make_role(environment: Environment, web_ui: Any = None) -> Role | None:
    """The role of this process, by Locust's runner; None when tokenswarm's options are not on the command
    line (a locustfile used as a library) or there is no runner."""
    opts = environment.parsed_options
    runner = environment.runner
    if opts is None or not hasattr(opts, "engine") or runner is None:
        return None
    if isinstance(runner, WorkerRunner):
        return WorkerRole(environment)
    if isinstance(runner, MasterRunner):
        return MasterRole(environment, web_ui)
    return LocalRole(environment, web_ui)
