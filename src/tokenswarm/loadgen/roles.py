"""tokenswarm's part of each Locust process: one object per role, made once when Locust starts.

Locust runs a process as one of three runners (local, master, worker); tokenswarm does the same:

* :class:`LocalRole`, a single process: its own users (a :class:`~tokenswarm.loadgen.swarm.Swarm`, driven as
  a :class:`~tokenswarm.loadgen.load.LocalLoad`) and its run folder.
* :class:`MasterRole`: the run folder and its workers (a :class:`~tokenswarm.loadgen.load.ClusterLoad` over
  the :class:`~tokenswarm.loadgen.cluster.WorkerLedger`); no users.
* :class:`WorkerRole`: users whose records go to the master (a
  :class:`~tokenswarm.loadgen.cluster.WorkerAgent`), every request granted by the master first (a
  :class:`~tokenswarm.loadgen.budget.LeasedBudget`).

A role that writes (local or master) makes a :class:`~tokenswarm.loadgen.controller.RunController` per
test, with the load it drives and a :class:`~tokenswarm.loadgen.recorder.RunRecorder`.
:mod:`tokenswarm.loadgen.plugin` makes the role at Locust's ``init`` and forwards the test's events to it;
users, load shapes and the web UI reach it as ``environment.tokenswarm``, the one attribute tokenswarm sets
on Locust's environment.

Settings are built once per run (:func:`tokenswarm.settings.from_options`): by ``tokenswarm run|sweep``,
which hands them to this process whole (:data:`tokenswarm.settings.WIRE_ENV`); else here at ``init`` from
Locust's options and the locustfile's defaults (bad input ends the process there, exit 2), or from the web
UI's start form for each test it starts. A master sends them to its workers with each test
(:class:`~tokenswarm.loadgen.messages.RunSettings`); workers never build settings.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any, ClassVar

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from tokenswarm import runfolder
from tokenswarm.datasets import open_dataset
from tokenswarm.exitstatus import ExitStatus
from tokenswarm.loadgen import messages, workarounds
from tokenswarm.loadgen.budget import LeasedBudget
from tokenswarm.loadgen.cluster import WorkerAgent, WorkerLedger
from tokenswarm.loadgen.controller import RunController
from tokenswarm.loadgen.lifecycle import UserWatch, WorkerWatch
from tokenswarm.loadgen.load import ClusterLoad, LocalLoad
from tokenswarm.loadgen.messages import (
    Abort,
    Drain,
    Drained,
    Grant,
    Lease,
    Level,
    Records,
    RunSettings,
    SettingsWanted,
)
from tokenswarm.loadgen.recorder import RunRecorder
from tokenswarm.loadgen.shapes import LevelShape
from tokenswarm.loadgen.swarm import Swarm
from tokenswarm.options import BY_DEST
from tokenswarm.preflight import PreflightError, check
from tokenswarm.selfcheck import Sample
from tokenswarm.settings import (
    MASTER_WAITING_ENV,
    WIRE_ENV,
    Settings,
    SettingsError,
    from_options,
    from_wire,
    to_wire,
    with_dialect,
    with_fresh_seed,
    with_trace,
)
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
    the file dataset's counts (records read, used, skipped by reason), None for generated prompts."""
    tokenizer_of(settings)
    if settings.dataset.name == "random":
        return None
    return open_dataset(settings.dataset, default_max_tokens=settings.request.max_tokens, max_prompts=1).describe()


class Role:
    """What every role has: the environment, the settings of the test, its swarm (roles with users) and
    its run controller (roles that write)."""

    name: ClassVar[str] = ""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        self.opts: argparse.Namespace = environment.parsed_options
        self.runner = environment.runner
        self.headless = bool(getattr(self.opts, "headless", False))
        self.settings: Settings | None = None
        self.swarm: Swarm | None = None
        self.run: RunController | None = None
        self.start_error: str | None = None  # why the last test could not start (the web UI shows it)

    # -- settings ----------------------------------------------------------------------------------
    def user_dialect(self) -> str:
        """The dialect the locustfile's user classes declare (one for all), else ""."""
        dialects = {getattr(u, "dialect", "") for u in self.env.user_classes}
        return dialects.pop() if len(dialects) == 1 else ""

    def build_settings(self, opts: argparse.Namespace | None = None, host: str | None = None) -> Settings:
        """Settings from ``opts`` (default: Locust's parsed options) and ``host`` (default: Locust's), with the
        locustfile's defaults: its user class's dialect, its load shape's class attributes (each used where
        the option was left at its default). SettingsError for bad input."""
        opts = self.opts if opts is None else opts
        values = vars(opts)
        changed: dict[str, Any] = {}
        dialect = self.user_dialect()
        if not values.get("dialect") and not values.get("endpoint") and dialect:
            changed["dialect"] = dialect
        shape = self.env.shape_class
        if isinstance(shape, LevelShape):
            shape.check_options(values)
            for dest, value in shape.option_defaults().items():
                if dest in BY_DEST and values.get(dest) == BY_DEST[dest].default:
                    changed[dest] = value
        if changed:
            opts = argparse.Namespace(**{**values, **changed})
        settings = from_options(opts, host=(self.env.host if host is None else host) or None)
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
    """A worker: users whose records go to the master; every request granted by the master first. Its
    settings come from the master (:class:`RunSettings`, with each test); it builds none."""

    name = "worker"

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        runner = self.runner
        self.worker = f"w{runner.worker_index}" if runner.worker_index >= 0 else runner.client_id
        self.agent: WorkerAgent | None = None
        self.budget: LeasedBudget | None = None
        self.received: RunSettings | None = None  # this test's settings, as the master sent them
        self.level: Level | None = None  # the level as the master last said
        self.running = False  # between test start and stop
        self.watch = UserWatch(runner, self.worker)
        environment.events.quitting.add_listener(lambda **_kw: self.quitting())
        workarounds.cache_default_args()
        bad = lambda line: log.error("tokenswarm: a message from the master was refused: %s", line)  # noqa: E731
        messages.on(runner, RunSettings, self._on_settings, bad)
        messages.on(runner, Level, self._on_level, bad)
        messages.on(runner, Grant, self._on_grant, bad)
        messages.on(runner, Drain, self._on_drain, bad)
        messages.on(runner, Abort, self._on_abort, bad)

    def test_start(self) -> None:
        self.running = True
        self.swarm = None
        if self.received is None:  # joined after the test started: ask for its settings
            messages.send(self.runner, SettingsWanted(worker=self.worker))
            return
        self._start_swarm(self.received)

    def _start_swarm(self, received: RunSettings) -> None:
        runner = self.runner
        try:
            self.settings = settings = from_wire(received.settings)
            agent = WorkerAgent(runner, self.worker, self._counts)
            budget = LeasedBudget(agent.ask)
            swarm = Swarm(self.env, settings, self.worker, shard=max(runner.worker_index, 0),
                          shards=received.shards, sink=agent.add, tokenizer=tokenizer_of(settings), budget=budget)
        except SettingsError as e:
            self.fail(str(e))
            return
        self.agent, self.budget, self.swarm = agent, budget, swarm
        if self.level is not None:
            swarm.set_level(self.level.level, self.level.workers, self.level.start)
        else:
            swarm.set_level(runner.target_user_count, 1, None)

    def _counts(self) -> tuple[int, int]:
        swarm = self.swarm
        return swarm.counts() if swarm is not None else (0, 0)

    def test_stop(self) -> None:
        self.running = False
        if self.swarm is not None:
            self.swarm.close()
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        self.received = None  # the next test brings its own
        self.level = None

    def quitting(self) -> None:
        self.watch.stop()

    def show_failure(self, msg: str) -> None:
        """A worker sends its failure to the master's Exceptions tab, as Locust does with its users' exceptions."""
        workarounds.report_to_master(self.runner, msg, FAILED_START)

    # -- the master's messages -----------------------------------------------------------------------
    def _on_settings(self, msg: RunSettings, _sender: str) -> None:
        self.received = msg
        if self.running and self.swarm is None:  # the answer to SettingsWanted
            self._start_swarm(msg)

    def _on_level(self, msg: Level, _sender: str) -> None:
        self.level = msg
        if self.swarm is not None:
            self.swarm.set_level(msg.level, msg.workers, msg.start)

    def _on_grant(self, msg: Grant, _sender: str) -> None:
        if self.budget is not None:
            self.budget.on_grant(msg.n, msg.exhausted)

    def _on_drain(self, msg: Drain, _sender: str) -> None:
        swarm, agent = self.swarm, self.agent
        if swarm is None or agent is None:
            messages.send(self.runner, Drained(worker=self.worker))
            return
        swarm.stop_sending()
        gevent.spawn(self._drained_when_idle, swarm, agent)

    def _drained_when_idle(self, swarm: Swarm, agent: WorkerAgent) -> None:
        while swarm.in_flight > 0:
            gevent.sleep(0.05)
        swarm.records.flush()
        agent.drained()

    def _on_abort(self, msg: Abort, _sender: str) -> None:
        workarounds.cancel_at_stop(self.env)  # the master was interrupted: the coming stop cancels requests


class WriterRole(Role):
    """A role that writes the run folder (local process or master): the run's settings, the preflight, the
    run controller, tokenswarm's Prometheus exporter, Ctrl-C and SIGTERM."""

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
                self.exporter.serve(getattr(self.opts, "metrics_bind", "") or "127.0.0.1", self.opts.metrics_port)
        try:
            self.settings = self._settings_at_init()
        except SettingsError as e:
            print(f"tokenswarm: error: {e}", file=sys.stderr, flush=True)
            sys.exit(ExitStatus.BAD_INPUT)
        # added now, after the runner's own: quitting runs its listeners in reverse, so this one stops the
        # test (and collects the workers' last records) before a master's listener sends them "quit"
        environment.events.quitting.add_listener(lambda **_kw: self.quitting())
        gevent.signal_handler(signal.SIGINT, self.sigint)
        workarounds.sigterm_like_sigint(self.sigint)

    def _settings_at_init(self) -> Settings:
        """The settings ``tokenswarm run|sweep`` built and handed over (:data:`WIRE_ENV`; the locustfile's user
        class may still name the dialect), else built from Locust's options and the locustfile's defaults."""
        wire = os.environ.get(WIRE_ENV)
        if wire:
            import json

            settings = with_dialect(from_wire(json.loads(wire)), self.user_dialect() or "")
            shape = self.env.shape_class
            if isinstance(shape, LevelShape):
                shape.check(settings)
            return settings
        settings = self.build_settings()
        return with_trace(settings) if settings.trace else settings

    # -- the web UI's start check --------------------------------------------------------------------
    def accept(self, settings: Settings, checked: Settings | None) -> None:
        """The web UI's start form asked for ``settings`` and they passed its check (the preflight's answer
        ``checked``, None without a preflight): the test start that follows takes them as they are."""
        if checked is not None:
            settings = replace(settings, request=replace(settings.request, model=checked.request.model),
                               model_from_server=False, preflight=False, provenance=checked.provenance)
        self.checked = (settings, time.monotonic()) if checked is not None else None
        self.settings = settings

    def _settings_for_test(self) -> Settings:
        """What the web UI's check passed a moment ago, else the settings of this process (headless), else
        built from the options Locust's web UI applied."""
        checked, self.checked = self.checked, None
        if checked is not None and time.monotonic() - checked[1] < PREFLIGHT_MEMORY_S:
            return checked[0]
        if not self.headless or self.settings is None:
            settings = self.build_settings()
            return with_trace(settings) if settings.trace else settings
        return self.settings

    # -- the test ------------------------------------------------------------------------------------
    def test_start(self) -> None:
        self.swarm = None
        try:
            settings = self._settings_for_test()
        except SettingsError as e:
            self.fail(str(e))
            return
        settings = with_fresh_seed(settings)  # a fresh seed per test unless --seed; workers get it with the rest
        if settings.preflight:
            try:
                settings = replace(check(settings), preflight=False)
            except PreflightError as e:
                self.fail(str(e))
                return
        self.tests += 1
        try:
            run_dir = runfolder.make_run_dir(self._out_dir(settings.out), settings.preset.name, settings.run_name)
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
                run.interrupt()
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
            run.interrupt()
        workarounds.interrupt_main(KeyboardInterrupt)  # what Ctrl-C does to Locust's main greenlet


class LocalRole(WriterRole):
    """A single process: its own users and its run folder."""

    name = "local"

    def start_run(self, settings: Settings, run_dir: str) -> RunController:
        swarm = Swarm(self.env, settings, "local", shard=0, shards=1, sink=self._add_rows,
                      tokenizer=tokenizer_of(settings))
        self.swarm = swarm
        run = RunController(self.env, settings, LocalLoad(swarm), RunRecorder(self.env, run_dir),
                            role=self.name, exporter=self.exporter, dataset_counts=swarm.calls.dataset_counts(),
                            own_selfcheck=True)
        run.client_priority = swarm.priority
        run.client_capture = swarm.capture.stats if swarm.capture is not None else None
        return run

    def _add_rows(self, rows: list[Any]) -> None:
        """The swarm's finished rows, to the run folder of the test in progress."""
        if self.run is not None:
            self.run.add_rows(rows)


class MasterRole(WriterRole):
    """A master: the run folder and its workers; no users of its own. It sends each test's settings to its
    workers (before Locust's spawn message, which starts their users) and to a worker that asks."""

    name = "master"

    def __init__(self, environment: Environment, web_ui: Any = None) -> None:
        super().__init__(environment, web_ui)
        self.watch = WorkerWatch(environment, self.runner)
        self.ledger: WorkerLedger | None = None
        self.sent_settings: RunSettings | None = None
        runner = self.runner
        messages.on(runner, Records, self._for_run(self._on_records, finishing=True), self._bad)
        messages.on(runner, Lease, self._for_run(lambda m, cid: self.ledger.on_lease(cid, m)), self._bad)
        messages.on(runner, Drained, self._for_run(lambda m, cid: self.ledger.on_drained(cid, m)), self._bad)
        messages.on(runner, SettingsWanted, self._on_settings_wanted, self._bad)
        if os.environ.get(MASTER_WAITING_ENV):  # `tokenswarm --master`: said here, where Ctrl-C/SIGTERM are handled
            opts = environment.parsed_options
            print(f"tokenswarm: master waiting for {opts.expect_workers} worker(s) on port {opts.master_bind_port}",
                  flush=True)

    @staticmethod
    def _bad(line: str) -> None:
        log.error("tokenswarm: a message from a worker was refused: %s", line)

    def start_run(self, settings: Settings, run_dir: str) -> RunController:
        # every worker takes its own share of the dataset: worker i of n takes prompts i, i+n, ...
        shards = max(len(workarounds.worker_states(self.runner)), 1)
        self.sent_settings = RunSettings(settings=to_wire(settings), shards=shards)
        messages.send(self.runner, self.sent_settings)
        self.ledger = WorkerLedger(self.runner, settings.requests)
        return RunController(self.env, settings, ClusterLoad(self.runner, self.ledger),
                             RunRecorder(self.env, run_dir), role=self.name, exporter=self.exporter,
                             dataset_counts=dataset_problem(settings))

    def _on_settings_wanted(self, msg: SettingsWanted, client_id: str) -> None:
        if self.sent_settings is not None and self.run is not None and not self.run.finished:
            messages.send(self.runner, self.sent_settings, client_id=client_id)

    def _on_records(self, msg: Records, client_id: str) -> None:
        run = self.run
        assert self.ledger is not None and run is not None
        self.ledger.on_records(client_id, msg)
        for fields in msg.selfcheck:
            run.add_sample(Sample(*fields))
        if msg.rows:
            run.add_rows(msg.rows)

    def _for_run(self, handler: Any, finishing: bool = False) -> Any:
        """``handler`` for messages of the running test; ``finishing``: also while the test's end waits for the
        workers' last records (Locust's quit, as after Ctrl-C in a sweep, ends the test before they arrive)."""

        def receive(msg: Any, client_id: str) -> None:
            run = self.run
            open_ = run is not None and (not run.finished or (finishing and run.taking_records))
            if not open_ or self.ledger is None:
                rows = len(getattr(msg, "rows", ()) or ())
                if rows:
                    log.warning("tokenswarm: %d records from %s arrived with no test running; dropped", rows,
                                client_id)
                return
            handler(msg, client_id)

        return receive

    def test_stop(self) -> None:
        run = self.run
        if run is not None and run.interrupted and not run.finished:
            # Ctrl-C in a headless sweep: Locust's quit ends the test without stopping the workers, whose
            # requests in flight would then never be recorded; stopped here, they cancel those requests and ship
            # their final records, which the test's end waits for
            workarounds.stop_workers(self.runner)
        super().test_stop()

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
