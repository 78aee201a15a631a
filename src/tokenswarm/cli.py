"""The ``tokenswarm`` command: run | sweep | capacity | ui | worker | report | compare | runs | engines |
simengine | gpu-exporter.

``run`` and ``sweep`` build the run's settings here, once (a bad value is one
line and exit code 2, before anything starts), start the embedded simulated
engine when the target is the ``sim`` preset with no ``--host``, check the
target (the preflight), then run Locust headless in a child process with
tokenswarm's locustfile and hand it the settings whole, in the environment
(:data:`tokenswarm.settings.WIRE_ENV`: keys never show on a command line);
Locust's own options go on its command line. At the end it prints the
results table and, as the last line, the run folder. ``ui`` hands Locust
the options instead (its start form edits them; each test builds its
settings). This module imports neither locust nor gevent.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import Any, NoReturn

from tokenswarm import __version__, children, provenance, runfolder
from tokenswarm.exitstatus import ExitStatus
from tokenswarm.options import AT_LEAST_1, OPTIONS, POSITIVE, ZERO_OR_MORE, Range, add_options, to_argv, to_env
from tokenswarm.settings import (
    MASTER_WAITING_ENV,
    WIRE_ENV,
    Settings,
    SettingsError,
    check_ranges,
    from_options,
    to_wire,
    with_host,
    with_trace,
)
from tokenswarm.sweep import DEFAULT_LEVELS

DEFAULT_DURATION = "30s"
DEFAULT_LEVEL_DURATION = "30s"
DEFAULT_CAPACITY_BRACKET = "1,1024"  # users: the search starts at 1 and doubles while the SLOs hold
DEFAULT_PROBE_DURATION = "15s"  # a probe's shortest run; it goes on until its intervals decide


def _packaged(name: str) -> str:
    """Path of a locustfile shipped inside tokenswarm.loadgen (found without importing locust)."""
    spec = importlib.util.find_spec("tokenswarm.loadgen")
    assert spec is not None and spec.submodule_search_locations
    return os.path.join(list(spec.submodule_search_locations)[0], name)


# -- run / sweep / ui / worker ----------------------------------------------------------------
def _add_load_args(p: argparse.ArgumentParser, kind: str) -> None:
    """The options of run, sweep, capacity and ui: the target, Locust's own, the distributed ones, and every
    tokenswarm option (:data:`tokenswarm.options.OPTIONS`)."""
    p.add_argument("--host", "-H", default=os.environ.get("TOKENSWARM_HOST", ""),
                   help="base URL of the server (scheme://host:port); default: the preset's, or an embedded "
                        "simulated engine for --engine sim")
    if kind not in ("sweep", "capacity"):
        p.add_argument("--users", "-u", type=int, default=int(os.environ.get("TOKENSWARM_USERS", "16")),
                       help="concurrent streams (closed loop: one request in flight per user; default 16)")
    p.add_argument("--spawn-rate", "-r", type=float, default=0.0,
                   help="users started per second (default: all at once)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="at the end, seconds that requests in flight may take to finish (default 60)")
    p.add_argument("--locustfile", "-f", default="", help="a locustfile of your own (default: tokenswarm's)")
    p.add_argument("--sim-args", default=os.environ.get("TOKENSWARM_SIM_ARGS", ""),
                   help="options for the embedded simulated engine, e.g. '--ttft-ms 200 --tpot-ms 20'")
    p.add_argument("--loglevel", "-L", default="WARNING", help="Locust's log level (default WARNING)")
    d = p.add_argument_group("distributed (Locust master and workers)")
    if kind != "ui":
        p.add_argument("--repeat", type=int, default=1, metavar="N",
                       help="run the plan N times, each with fresh prompts (--seed S: S, S+1, ...), in "
                            "<out>/repeat-<i>/, then print and write the spread between the runs (repeats.md)")
        p.add_argument("--media-axis", default="", metavar="NAME=V1,V2",
                       help="one run of the plan per media setting (images=0,1,2,4; image-size=256x256,1024x1024; "
                            "audio-seconds=5,30) in <out>/<name>-<value>/, then compared (<out>/compare/)")
    d.add_argument("--workers", type=int, default=int(os.environ.get("TOKENSWARM_WORKERS", "0") or 0),
                   help="run a master and this many local worker processes (0: one process)")
    d.add_argument("--master", action="store_true", help="run as a master only; workers connect with "
                   "`tokenswarm worker --master-host HOST`")
    d.add_argument("--expect-workers", type=int, default=1, help="with --master: workers to wait for (default 1)")
    d.add_argument("--master-bind-host", default="*", help="with --master: address to listen on (default all)")
    d.add_argument("--master-bind-port", type=int, default=5557, help="with --master: port (default 5557)")
    add_options(p)


def _prepare(args: argparse.Namespace, kind: str) -> Settings:
    """Validate everything before anything starts; fills in the defaults of the command."""
    if kind == "capacity":
        args.capacity = True
        if not args.levels and not args.rates:
            args.levels = DEFAULT_CAPACITY_BRACKET
        if not args.level_duration and str(args.level_requests or "").strip() in ("", "0"):
            args.level_duration = DEFAULT_PROBE_DURATION
        args.users = 1  # set by the probes
    elif kind == "sweep":
        if not args.levels and not args.rates:
            args.levels = DEFAULT_LEVELS
        if not args.level_duration and str(args.level_requests or "").strip() in ("", "0"):
            args.level_duration = DEFAULT_LEVEL_DURATION
        args.users = 1  # set by the levels
    else:
        if args.users < 1:
            raise SettingsError(f"bad --users {args.users}: must be at least 1")
        if kind == "run" and (args.levels or args.rates):
            raise SettingsError("--levels/--rates make a sweep: use `tokenswarm sweep`")
        if kind == "run" and not args.duration and not args.requests and not args.trace:
            args.duration = DEFAULT_DURATION
    check_ranges(args, {"--spawn-rate": Range("must be positive", lo=0), "--stop-timeout": ZERO_OR_MORE,
                        "--workers": ZERO_OR_MORE})
    if args.master and args.workers:
        raise SettingsError("--master waits for remote workers; --workers starts local ones: choose one")
    if args.expect_workers < 1:
        raise SettingsError(f"bad --expect-workers {args.expect_workers}: must be at least 1")
    if args.locustfile and not os.path.isfile(args.locustfile):
        raise SettingsError(f"bad --locustfile {args.locustfile!r}: no such file")
    settings = with_trace(from_options(args, host=args.host or None))
    _check_dataset(settings)
    if not settings.request.include_usage and not settings.dialect.whole(settings.request):
        how = ("with --tokenizer on the generated text" if settings.tokenizer else
               "one per output event, a lower bound wherever an event carries several tokens (--tokenizer counts "
               "them exactly)")
        print(f"tokenswarm: note: --no-stream-usage: no usage asked for; output tokens are counted {how} "
              "(requests.csv token_source)", file=sys.stderr, flush=True)
    return settings


def _check_dataset(settings: Settings) -> None:
    """Load the tokenizer and read the dataset once now, so a bad file stops the run before anything starts."""
    from tokenswarm.datasets import open_dataset

    tokenizer = None
    if settings.tokenizer:
        from tokenswarm.tokencount import load_tokenizer

        tokenizer = load_tokenizer(settings.tokenizer)
    if settings.dataset.name != "random":
        open_dataset(settings.dataset, tokenizer=tokenizer, default_max_tokens=settings.request.max_tokens,
                     max_prompts=1)


def _target(args: argparse.Namespace, settings: Settings, stack: ExitStack) -> tuple[str, Any, Settings]:
    """The base URL to load: --host, or an embedded simulated engine for --engine sim (then also its process,
    and the settings aimed at it)."""
    if settings.preset.name != "sim" or args.host:
        return args.host, None, settings
    sim = _start_sim(args.sim_args, stack)
    return sim.url, sim, with_host(settings, sim.url)


def _start_sim(sim_args: str, stack: ExitStack) -> Any:
    """Start the embedded simulated engine with ``--sim-args`` (stopped when ``stack`` closes); arguments it
    refuses are a SettingsError naming them and its reason (one line, exit 2)."""
    from tokenswarm.simengine import SimExitError, SimProcess

    try:
        argv = shlex.split(sim_args or "")
    except ValueError as e:
        raise SettingsError(f"bad --sim-args {sim_args!r}: {e}") from None
    sim = SimProcess(argv)
    try:
        sim.start()
    except SimExitError as e:
        if e.code == 2:
            raise SettingsError(f"bad --sim-args {sim_args!r}: {e.reason}") from None
        raise
    stack.callback(sim.stop)
    print(f"tokenswarm: embedded simulated engine at {sim.url}", flush=True)
    return sim


def _preflight(args: argparse.Namespace, settings: Settings) -> Settings:
    """Check the target before anything is written: a failure is one line and exit code 2, with no run folder.
    Returns the settings with the model the server names (when none was given), marked checked."""
    if not settings.preflight or args.master:
        return settings  # a master waiting for remote workers checks at the test's start (the target may still
        # be starting)
    from tokenswarm.preflight import PreflightError, check

    try:
        return replace(check(settings), preflight=False)
    except PreflightError as e:
        raise SettingsError(str(e)) from None


def _check_out(out: str) -> None:
    """The run folder can be made (its nearest existing parent is a writable folder); nothing is created yet."""
    where = out or runfolder.DEFAULT_ROOT
    path = os.path.abspath(where)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path) or not os.access(path, os.W_OK):
        raise SettingsError(f"cannot create the run folder {where!r}: {path} is not a writable folder")


def cmd_load(args: argparse.Namespace) -> int:
    """`run`, `sweep` and `capacity`: headless, then the table and (last line) the run folder. Nothing is
    written before the target passed its preflight. ``--repeat N``: N runs of the plan, each with fresh
    prompts, in ``<out>/repeat-<i>/``, then the spread between them (repeats.json, repeats.md)."""
    kind = args.command
    if getattr(args, "resume", ""):
        return _resume(args)
    settings = _prepare(args, kind)
    settings = replace(settings, provenance=provenance.start(getattr(args, "argv", ()), settings.headers.values()))
    _check_out(args.out)
    if args.repeat < 1:
        raise SettingsError(f"bad --repeat {args.repeat}: must be at least 1")
    axis = _media_axis(args, settings)
    with ExitStack() as stack:
        host, sim, settings = _target(args, settings, stack)
        settings = _preflight(args, settings)
        if axis:
            return _run_axis(args, settings, host, sim, axis)
        if args.repeat == 1:
            code, run_dir = _run_once(args, settings, host, sim, args.out)
            if run_dir is not None:
                _print_results(run_dir, code)
                _resume_hint(run_dir, code)
            return code
        from tokenswarm.report import repeats

        base = args.out or runfolder.make_run_dir("", settings.preset.name, args.run_name)
        os.makedirs(base, exist_ok=True)
        done, code = [], 0
        for i in range(args.repeat):
            print(f"tokenswarm: repeat {i + 1} of {args.repeat}", flush=True)
            seed = replace(settings, seed=settings.seed + i, dataset=replace(settings.dataset, seed=settings.seed + i)
                           ) if not settings.seed_drawn else settings  # --seed: S, S+1, ...; else fresh each time
            code, run_dir = _run_once(args, seed, host, sim, os.path.join(base, f"repeat-{i + 1}"))
            if run_dir is None or code == ExitStatus.INTERRUPTED:
                break
            done.append(run_dir)
            _print_results(run_dir, code, last=False)
        if len(done) > 1:
            print("\n" + repeats.text(repeats.write(base, done)) + "\n", flush=True)
        print(base, flush=True)
        return code


def _resume(args: argparse.Namespace) -> int:
    """``sweep --resume DIR``: the sweep in DIR from its first level cut short, with the settings and seed it
    recorded, into DIR/part-<n>/; then DIR's files and report join the parts (:mod:`tokenswarm.resume`)."""
    from tokenswarm import resume
    from tokenswarm.settings import api_key

    if args.repeat != 1:
        raise SettingsError("--resume continues one sweep: leave out --repeat")
    env_headers = [h for h in os.environ.get("TOKENSWARM_HEADER", "").splitlines() if h.strip()]
    r = resume.prepare(args.resume, api_key(args), env_headers + list(args.header or []))
    args.workers = args.workers or r.workers
    args.sim_args = args.sim_args or r.sim_args
    print(f"tokenswarm: resuming {args.resume} at level {r.remaining_levels[0]:g} (done: "
          f"{', '.join(f'{x:g}' for x in r.done_levels) or 'none'}), into {r.part_dir}", flush=True)
    with ExitStack() as stack:
        settings, sim, host = r.settings, None, args.host or r.host
        if r.embedded_sim and not args.host:
            sim = _start_sim(args.sim_args, stack)
            host = sim.url
        if host:
            settings = with_host(settings, host)
        settings = _preflight(args, settings)
        resume.start_part(r)
        code, _part = _run_once(args, settings, host, sim, r.part_dir)
        resume.join(args.resume)
    from tokenswarm.report import ReportError, build_report

    try:
        build_report(args.resume)
    except ReportError as e:
        print(f"tokenswarm: error: {e}", file=sys.stderr, flush=True)
    _print_results(args.resume, code)
    _resume_hint(args.resume, code)
    return code


def _resume_hint(run_dir: str, code: int) -> None:
    """After a sweep stopped early: how to run the rest (on stderr; the run folder stays stdout's last line)."""
    if code == ExitStatus.INTERRUPTED and os.path.exists(os.path.join(run_dir, "resume.json")):
        print(f"tokenswarm: the sweep stopped early; `tokenswarm sweep --resume {shlex.quote(run_dir)}` runs the "
              "rest", file=sys.stderr, flush=True)


def _media_axis(args: argparse.Namespace, settings: Settings) -> list[tuple[str, Any]]:
    """``--media-axis``'s (label, media spec) per value, each checked against the dialect; [] without one."""
    text = getattr(args, "media_axis", "")
    if not text:
        return []
    from tokenswarm.media import parse_axis
    from tokenswarm.settings import check_dialect_media

    if args.repeat > 1:
        raise SettingsError("--media-axis and --repeat: choose one")
    axis = parse_axis(text, settings.media)
    for _label, spec in axis:
        check_dialect_media(spec, settings.dialect)
    return axis


def _run_axis(args: argparse.Namespace, settings: Settings, host: str, sim: Any, axis: list[tuple[str, Any]]
              ) -> int:
    """One run of the plan per media setting of ``axis``, in ``<out>/<label>/``, then ``tokenswarm compare``
    over them (the first is the baseline) in ``<out>/compare/``; prints each table, then the comparison."""
    from tokenswarm.report.compare import compare

    base = args.out or runfolder.make_run_dir("", settings.preset.name, args.run_name)
    os.makedirs(base, exist_ok=True)
    done, labels, code = [], [], 0
    for label, spec in axis:
        print(f"tokenswarm: {label}", flush=True)
        code, run_dir = _run_once(args, replace(settings, media=spec), host, sim, os.path.join(base, label))
        if run_dir is None or code == ExitStatus.INTERRUPTED:
            break
        done.append(run_dir)
        labels.append(label)
        _print_results(run_dir, code, last=False)
    if len(done) > 1:
        result = compare(done, labels, out_dir=os.path.join(base, "compare"))
        print("\n" + result.text() + "\n" + "\n".join(result.verdict_lines()) + "\n", flush=True)
    print(base, flush=True)
    return code


def _run_once(args: argparse.Namespace, settings: Settings, host: str, sim: Any, out: str
              ) -> tuple[int, str | None]:
    """One headless Locust run of ``settings`` into ``out`` (or a new run folder): (exit code, run folder;
    None when no test started, whose folder is then removed)."""
    existed = bool(out) and os.path.isdir(out)  # a folder the user made is never removed
    try:
        run_dir = runfolder.make_run_dir(out, settings.preset.name, args.run_name)
    except OSError as e:
        raise SettingsError(f"cannot create the run folder {out or runfolder.DEFAULT_ROOT!r}: {e}") from None
    if sim is not None:
        sim.log_to(os.path.join(run_dir, "simengine.log"))
    settings = replace(settings, out=run_dir)
    if settings.plan is not None and not settings.plan.capacity and not getattr(args, "resume", ""):
        from tokenswarm import resume

        resume.write_info(run_dir, settings, args.host, sim is not None, args.sim_args, args.workers)
    # a sweep, a capacity search, or a trace replay (one open-loop level), is driven by the sweep shape
    locustfile = args.locustfile or _packaged("sweepfile.py" if settings.plan else "locustfile.py")
    cmd = _locust_cmd(args, locustfile, host) + ["--headless", "--only-summary"]
    if args.locust_tables:
        cmd.append("--locust-tables")
    if settings.metrics_port:
        cmd += ["--metrics-port", str(settings.metrics_port)]
    if settings.plan is None:
        rate = args.spawn_rate or float(args.users)
        cmd += ["-u", str(args.users), "-r", f"{rate:g}"]
    env = _locust_env()
    env[WIRE_ENV] = json.dumps(to_wire(settings))  # the run's settings, whole: built here once
    code = _launch(args, cmd, env, run_dir)
    if not existed and runfolder.remove_if_unused(run_dir):
        # no test started (interrupted while a master waited for workers, or refused at its start): no folder
        if code not in (ExitStatus.BAD_INPUT, ExitStatus.INTERRUPTED):  # those said why themselves
            print(f"tokenswarm: stopped before the test began; nothing measured, no run folder kept ({run_dir})",
                  file=sys.stderr, flush=True)
        return (code if code else int(ExitStatus.BAD_INPUT)), None
    return code, run_dir


def cmd_ui(args: argparse.Namespace) -> int:
    """Locust's web UI with tokenswarm's options (a simulated engine is started for --engine sim)."""
    args.command = "ui"
    settings = _prepare(args, "ui")
    with ExitStack() as stack:
        host, _sim, _ = _target(args, settings, stack)
        locustfile = args.locustfile or _packaged("sweepfile.py" if settings.plan else "locustfile.py")
        cmd = _locust_cmd(args, locustfile, host) + to_argv(_option_values(args)) + [
            "--web-host", args.web_host, "--web-port", str(args.web_port)]
        if not settings.plan:  # a sweep's levels set the users; the form's user fields are then disabled
            cmd += ["-u", str(args.users), "-r", f"{args.spawn_rate or args.users:g}"]
        login = os.environ.get("LOCUST_WEB_LOGIN", "").lower() in ("1", "true", "yes")
        if args.web_login or login:
            if not os.environ.get("TOKENSWARM_WEB_PASSWORD"):
                raise SettingsError("--web-login needs TOKENSWARM_WEB_PASSWORD (and TOKENSWARM_WEB_USERNAME, "
                                    "default tokenswarm) in the environment")
            cmd.append("--web-login")
        elif args.web_host not in ("127.0.0.1", "localhost", "::1"):
            print("tokenswarm: warning: the web UI listens beyond loopback without a login; use --web-login "
                  "with TOKENSWARM_WEB_PASSWORD set, or an authenticating proxy", file=sys.stderr)
        print(f"tokenswarm: web UI at http://{args.web_host}:{args.web_port}", flush=True)
        env = _locust_env()
        env.update(to_env(_option_values(args), secret_only=True))  # keys never go on a command line
        env.pop("TOKENSWARM_CLI", None)
        return _launch(args, cmd, env, None)


def cmd_worker(args: argparse.Namespace) -> int:
    """A worker (or --processes of them) connecting to a master; settings come from the master.

    Says what it is connecting to; once connected each worker process says so itself, and how many users it
    runs (:mod:`tokenswarm.loadgen.lifecycle`). Ctrl-C or SIGTERM stops it cleanly, no traceback."""
    if args.locustfile and not os.path.isfile(args.locustfile):
        raise SettingsError(f"bad --locustfile {args.locustfile!r}: no such file")
    if not args.master_host.strip():
        raise SettingsError("bad --master-host '': the master's address is required")
    if not 0 < args.master_port < 65536:
        raise SettingsError(f"bad --master-port {args.master_port}: must be a port number, 1 to 65535")
    if args.processes < 1:
        raise SettingsError(f"bad --processes {args.processes}: must be at least 1")
    cmd = [sys.executable, "-m", "locust", "-f", args.locustfile or _packaged("locustfile.py"), "--worker",
           "--master-host", args.master_host, "--master-port", str(args.master_port), "--loglevel", args.loglevel]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    more = f" ({args.processes} processes)" if args.processes > 1 else ""
    print(f"tokenswarm: worker connecting to master {args.master_host}:{args.master_port}{more}", file=sys.stderr,
          flush=True)
    return run_worker(cmd, env)


WORKER_EXIT_WAIT_S = 30.0  # after Ctrl-C, how long a worker's processes may take to send their last records


def run_worker(cmd: list[str], env: dict[str, str]) -> int:
    """Run Locust's worker (and the processes it forks) in a process group of its own; Ctrl-C or SIGTERM
    becomes SIGTERM to the whole group. A connected Locust worker shuts down cleanly on SIGTERM (it tells the
    master it quits; exit 0); one still connecting simply ends (exit 130 here). SIGINT would make Locust print
    a KeyboardInterrupt and exit 1 while it connects, and reach only the first of --processes. A second
    Ctrl-C kills the group."""
    return run_child(cmd, env, group=True)


def _wait_group(pgid: int, timeout: float) -> None:
    """Wait (up to ``timeout`` s) until no process of the group ``pgid`` is left, then kill what remains."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.1)


def _locust_cmd(args: argparse.Namespace, locustfile: str, host: str) -> list[str]:
    """Locust's command line: the locustfile and Locust's own options."""
    cmd = [sys.executable, "-m", "locust", "-f", locustfile, "--stop-timeout", f"{args.stop_timeout:g}",
           "--loglevel", args.loglevel]
    if host:
        cmd += ["-H", host]
    return cmd


def _option_values(args: argparse.Namespace) -> dict[str, Any]:
    """tokenswarm's option values as the command line gave them (``tokenswarm ui`` hands them to Locust's
    parser, for its start form: :func:`tokenswarm.options.to_argv`, secrets by :func:`~tokenswarm.options.to_env`)."""
    return {o.dest: getattr(args, o.dest) for o in OPTIONS}


def _locust_env() -> dict[str, str]:
    """The child's environment: ours without tokenswarm's option variables (the settings, or for ``ui`` the
    command line, carry the options)."""
    keep = ("TOKENSWARM_WEB_USERNAME", "TOKENSWARM_WEB_PASSWORD")  # for the web login; not options
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENSWARM_") or k in keep}
    env["TOKENSWARM_CLI"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: argparse.Namespace, cmd: list[str], env: dict[str, str], run_dir: str | None) -> int:
    """One process; or a master and --workers local workers; or a master waiting for remote workers.

    Local workers are this process's children beside the master, not forked by it (Locust's ``--processes``):
    a worker that dies is a sibling the master reports lost while the run goes on, each worker's log is a file
    in the run folder (worker-N.log), and Ctrl-C reaches the master alone, which stops them."""
    if args.master:
        cmd = cmd + ["--master", "--expect-workers", str(args.expect_workers), "--master-bind-host",
                     args.master_bind_host, "--master-bind-port", str(args.master_bind_port), "--enable-rebalancing"]
        # the Locust process says it waits once its signal handlers are in (a stop before that killed it silently)
        return run_child(cmd, {**env, MASTER_WAITING_ENV: "1"})
    if not args.workers:
        return run_child(cmd, env)
    port = _free_port()
    master = cmd + ["--master", "--expect-workers", str(args.workers), "--master-bind-host", "127.0.0.1",
                    "--master-bind-port", str(port), "--enable-rebalancing", "--expect-workers-max-wait", "60"]
    worker = [sys.executable, "-m", "locust", "-f", _packaged("locustfile.py") if not args.locustfile
              else args.locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
              "--loglevel", args.loglevel]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    worker_env = {k: v for k, v in env.items() if k != WIRE_ENV}  # workers receive the settings from the master
    try:
        for i in range(args.workers):
            log = open(os.path.join(run_dir, f"worker-{i}.log") if run_dir else os.devnull, "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen(worker, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                          **children.popen_kwargs()))
        print(f"tokenswarm: master and {args.workers} local workers (pids "
              f"{', '.join(str(p.pid) for p in procs)})", flush=True)
        return run_child(master, env)
    finally:
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def run_child(cmd: list[str], env: dict[str, str], group: bool = False) -> int:
    """Run a Locust process in its own session and pass it our SIGINT/SIGTERM, one for one: the first Ctrl-C
    makes it stop and write its outputs (exit 130), a second makes it exit at once. ``group``: signal its whole
    process group (SIGTERM, then SIGKILL) and wait for the processes it forked (see :func:`run_worker`)."""
    proc = subprocess.Popen(cmd, env=env, **children.popen_kwargs())
    interrupts = 0

    def forward(sig: int, _frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        try:
            if group:
                os.killpg(proc.pid, signal.SIGTERM if interrupts == 1 else signal.SIGKILL)
            else:
                proc.send_signal(sig)
        except ProcessLookupError:
            pass

    old_int = signal.signal(signal.SIGINT, forward)
    old_term = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
        if group:
            _wait_group(proc.pid, WORKER_EXIT_WAIT_S)  # --processes: the forked workers outlive their parent
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    if interrupts and code not in (0, 1, 2):
        return int(ExitStatus.INTERRUPTED)
    return code if code >= 0 else int(ExitStatus.INTERRUPTED)


def _print_results(run_dir: str, code: int = 0, last: bool = True) -> None:
    from tokenswarm.report import ReportError, build_report, summary_text

    table = summary_text(run_dir)
    if not table and os.path.exists(os.path.join(run_dir, runfolder.REQUESTS_CSV)):
        try:
            build_report(run_dir)
            table = summary_text(run_dir)
        except ReportError:
            table = ""
    if table:
        print("\n" + table + "\n", flush=True)
    if code == ExitStatus.FAILURES:  # why: which levels failed, how much, of which kinds (run.json)
        try:
            reason = runfolder.read_run_json(run_dir).get("exit_reason")
        except (OSError, ValueError, AttributeError):
            reason = None
        if reason:
            print(f"tokenswarm: {reason}", file=sys.stderr, flush=True)
    print(run_dir if last else f"tokenswarm: run folder {run_dir}", flush=True)


# -- report / engines ------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from tokenswarm.report import build_report, summary_text

    build_report(args.run_dir, warmup_s=args.warmup)
    print(summary_text(args.run_dir))
    print(args.run_dir)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tokenswarm.report.compare import compare, default_out_dir, parse_labels

    result = compare(args.run_dirs, parse_labels(args.labels) or None, args.out or default_out_dir(),
                     margin_pct=args.margin)
    print(result.text(), flush=True)
    for line in result.verdict_lines():
        print(line, flush=True)
    for line in result.warnings:
        print(f"tokenswarm: warning: {line}", file=sys.stderr, flush=True)
    for line in result.notes:
        print(f"tokenswarm: note: {line}", file=sys.stderr, flush=True)
    print(result.out_dir)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """One index page (HTML) of every run folder under the root: :mod:`tokenswarm.report.runs`."""
    from tokenswarm.report.runs import write_index

    index = write_index(args.root, args.out or None)
    for line in index.problems:
        print(f"tokenswarm: warning: {line}", file=sys.stderr, flush=True)
    print(f"tokenswarm: {len(index.rows)} run{'s' if len(index.rows) != 1 else ''} indexed", flush=True)
    print(index.path, flush=True)
    return 0


def cmd_engines(_args: argparse.Namespace) -> int:
    from tokenswarm.presets import PRESETS, get_preset

    rows = [("preset", "dialect", "default URL", "path", "metrics", "notes")]
    for name in PRESETS:
        e = get_preset(name)
        rows.append((e.name, e.dialect, e.base_url, e.path, e.metrics_path or "-", e.notes))
    _table(rows)
    from tokenswarm.dialects import DIALECTS

    print("\n--dialect NAME takes its path (docs/engines-and-dialects.md):")
    _table([("dialect", "path", "caps output with", "output tokens from")]
           + [(d.name, d.path, d.max_tokens_field, d.tokens_from) for d in DIALECTS.values()])
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


def cmd_gpu_exporter(args: argparse.Namespace) -> int:
    from tokenswarm import gpuexporter

    if not 0 <= args.port <= 65535:
        raise SettingsError(f"bad --port {args.port}: must be a port number, 0 to 65535")
    try:
        gpuexporter.serve(args.host, args.port)
    except OSError as e:
        raise SettingsError(f"gpu-exporter: cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    return 0


# -- simengine -------------------------------------------------------------------------------
def _add_sim_args(p: argparse.ArgumentParser) -> None:
    from tokenswarm.simengine import BatchModel

    d = BatchModel()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    p.add_argument("--model", default="tokenswarm-sim", help="model name /v1/models lists (any name is answered)")
    p.add_argument("--strict-model", action="store_true", help="answer 404 for other model names, as vLLM does")
    p.add_argument("--api-key", default=os.environ.get("TOKENSWARM_SIM_API_KEY", ""),
                   help="require 'Authorization: Bearer KEY' (else 401); default $TOKENSWARM_SIM_API_KEY")
    t = p.add_argument_group("fixed timing (both set: every request gets exactly this)")
    t.add_argument("--ttft-ms", type=float, default=None, help="time to first token after admission")
    t.add_argument("--tpot-ms", type=float, default=None, help="time between output tokens")
    t.add_argument("--ttft-sigma", type=float, default=0.0,
                   help="stochastic mode: each request's TTFT is lognormal, median --ttft-ms, this shape (0: fixed)")
    t.add_argument("--tpot-sigma", type=float, default=0.0,
                   help="stochastic mode: each request's TPOT (all its tokens) is lognormal, median --tpot-ms")
    t.add_argument("--seed", type=int, default=None, help="seed of the stochastic mode's draws")
    b = p.add_argument_group("continuous-batching model (used unless fixed timing is set)")
    b.add_argument("--max-num-seqs", type=int, default=None,
                   help=f"batch slots (default {d.max_num_seqs}; with fixed timing: 0, unlimited)")
    b.add_argument("--prefill-tps", type=float, default=d.prefill_tps, help="prefill rate, prompt tokens/s")
    b.add_argument("--step-base-ms", type=float, default=d.step_base_ms, help="decode step time, empty batch")
    b.add_argument("--step-per-seq-ms", type=float, default=d.step_per_seq_ms, help="added per running sequence")
    b.add_argument("--max-batched-tokens", type=int, default=d.max_batched_tokens, help="token budget per step")
    b.add_argument("--kv-cache-tokens", type=int, default=d.kv_cache_tokens, help="KV cache capacity, tokens")
    p.add_argument("--default-max-tokens", type=int, default=128, help="output length when a request sets none")
    p.add_argument("--prefix-cache-blocks", type=int, default=8192,
                   help="prefix cache size in 16-token blocks, LRU (0: no prefix cache; default 8192)")
    p.add_argument("--max-model-len", type=int, default=32768, help="context length: longer requests get 400")
    f = p.add_argument_group("fault injection (see tokenswarm/simengine/faults.py)")
    f.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                   help="inject a fault in this share of requests (repeatable): http_429, http_500, slow_headers, "
                        "disconnect, malformed, error_event, stall, truncate; a request can also ask for one with "
                        "the header X-Sim-Fault: KIND")
    f.add_argument("--fault-delay", type=float, default=5.0, help="seconds slow_headers and stall hold (default 5)")
    f.add_argument("--fault-seed", type=int, default=None, help="seed for drawing faults")
    p.add_argument("--workers", type=int, default=1, help="engine processes sharing the port (SO_REUSEPORT), "
                                                           "for more than one core can write (default 1)")
    p.add_argument("--truth-log", default=None, metavar="FILE",
                   help="append per request: id, arrival, first and last write times (epoch s), tokens")


def cmd_simengine(args: argparse.Namespace) -> int:
    from tokenswarm.simengine import BatchModel, SimConfig, serve

    check_ranges(args, {"--ttft-ms": ZERO_OR_MORE, "--tpot-ms": ZERO_OR_MORE, "--ttft-sigma": ZERO_OR_MORE,
                        "--tpot-sigma": ZERO_OR_MORE, "--prefill-tps": POSITIVE,
                        "--max-batched-tokens": POSITIVE, "--kv-cache-tokens": POSITIVE,
                        "--default-max-tokens": POSITIVE, "--max-model-len": POSITIVE,
                        "--max-num-seqs": ZERO_OR_MORE, "--workers": AT_LEAST_1,
                        "--prefix-cache-blocks": Range("must be 0 (off) or more", lo=0),
                        "--fault-delay": ZERO_OR_MORE})
    from tokenswarm.simengine.faults import parse_faults

    try:
        faults = parse_faults(args.fault)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    fixed = args.ttft_ms is not None or args.tpot_ms is not None
    if (args.ttft_sigma or args.tpot_sigma) and not fixed:
        raise SettingsError("--ttft-sigma/--tpot-sigma draw around --ttft-ms/--tpot-ms: give those too")
    if not fixed and args.max_num_seqs == 0:
        raise SettingsError("bad --max-num-seqs 0: the batching model needs at least 1 slot")
    batch = BatchModel(
        max_num_seqs=args.max_num_seqs or BatchModel.max_num_seqs, prefill_tps=args.prefill_tps,
        step_base_ms=args.step_base_ms, step_per_seq_ms=args.step_per_seq_ms,
        max_batched_tokens=args.max_batched_tokens, kv_cache_tokens=args.kv_cache_tokens,
    )
    cfg = SimConfig(host=args.host, port=args.port, model=args.model, ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms,
                    ttft_sigma=args.ttft_sigma, tpot_sigma=args.tpot_sigma, seed=args.seed,
                    max_num_seqs=args.max_num_seqs, batch=batch, default_max_tokens=args.default_max_tokens,
                    max_model_len=args.max_model_len, truth_log=args.truth_log, strict_model=args.strict_model,
                    api_key=args.api_key, faults=faults, fault_delay_s=args.fault_delay,
                    fault_seed=args.fault_seed, workers=args.workers, prefix_cache_blocks=args.prefix_cache_blocks)
    try:
        serve(cfg)
    except OSError as e:
        raise SettingsError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0


# -- main ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Bad command lines get one line and exit code 2, not the whole usage: an unknown option comes with the
    closest known ones ("did you mean"), an ambiguous abbreviation with what it could mean."""

    argv: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            hint = _did_you_mean(self, message)
        print(f"{self.prog}: error: {message}{hint} (`{self.prog} --help` lists the options)", file=sys.stderr)
        sys.exit(int(ExitStatus.BAD_INPUT))


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean --max-tokens?`` for the unknown options in ``message``, from the subcommand's options."""
    known: list[str] = []
    sub = next((a for a in getattr(parser, "argv", ()) if not a.startswith("-")), None)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and sub in action.choices:
            known = [o for a in action.choices[sub]._actions for o in a.option_strings]
    known = known or [o for a in parser._actions for o in a.option_strings]
    tips = []
    for word in message.split(":", 1)[1].split():
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=")[0], known, n=2, cutoff=0.6)
            if close:
                tips.append(f"{word.split('=')[0]}: did you mean {' or '.join(close)}?")
    return "; " + "; ".join(tips) if tips else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokenswarm", description="Load tests for LLM serving engines, on Locust.")
    parser.add_argument("--version", action="version", version=f"tokenswarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("run", help="one fixed concurrency level, headless; prints the table and the run folder")
    _add_load_args(p, "run")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("sweep", help="a concurrency (--levels) or request-rate (--rates) sweep, headless, "
                                     "with the report")
    _add_load_args(p, "sweep")
    p.add_argument("--resume", default="", metavar="DIR",
                   help="continue the interrupted sweep in DIR from its first level cut short, with its settings "
                        "and seed; give the API key and headers again. DIR's report then joins the parts")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("capacity", help="the highest concurrency (or, with --rates LOW,HIGH, request rate) whose "
                                        "--slo holds, with its 95 %% interval; headless")
    _add_load_args(p, "capacity")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("ui", help="Locust's web UI with tokenswarm's users and options")
    _add_load_args(p, "ui")
    p.add_argument("--web-host", default="127.0.0.1", help="address of the web UI (default 127.0.0.1)")
    p.add_argument("--web-port", type=int, default=8089, help="port of the web UI (default 8089)")
    p.add_argument("--web-login", action="store_true", help="require a login (TOKENSWARM_WEB_USERNAME, "
                   "TOKENSWARM_WEB_PASSWORD from the environment); on by default with LOCUST_WEB_LOGIN=true")
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("worker", help="a worker process for a master elsewhere (`--master` on run/sweep/ui)")
    p.add_argument("--master-host", default=os.environ.get("LOCUST_MASTER_NODE_HOST", "127.0.0.1"),
                   help="the master's address (default 127.0.0.1)")
    p.add_argument("--master-port", type=int, default=int(os.environ.get("LOCUST_MASTER_NODE_PORT", "5557")),
                   help="the master's port (default 5557)")
    p.add_argument("--processes", type=int, default=1, help="worker processes to fork (default 1)")
    p.add_argument("--locustfile", "-f", default="", help="a locustfile of your own (default: tokenswarm's)")
    p.add_argument("--loglevel", "-L", default="WARNING", help="Locust's log level (default WARNING)")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("report", help="rebuild a run folder's derived files (levels.csv, summary.json, "
                                      "report.md, report.html, plots)")
    p.add_argument("run_dir", help="the run folder (reports/<run_id>)")
    p.add_argument("--warmup", type=float, default=None, help="seconds trimmed from the start of each level")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("compare", help="put run folders side by side (compare.md/.html/.csv and plots)")
    p.add_argument("run_dirs", nargs="+", help="run folders (reports/<run_id>) to compare")
    p.add_argument("--labels", default="", help="comma-separated names, one per run (default: run name, engine "
                                                 "or folder)")
    p.add_argument("--out", default="", help="where to write (default: reports/compare-<time>/)")
    p.add_argument("--margin", type=float, default=5.0, metavar="PCT",
                   help="verdicts: a ratio whose 95 %% interval stays within 1 +/- PCT %% is 'no detectable "
                        "difference' (default 5)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("runs", help="one index page (HTML) of every run under a folder: date, engine, model, "
                                    "version, command, peak and saturation, each linked to its report")
    p.add_argument("root", help="the folder holding run folders (e.g. reports/)")
    p.add_argument("--out", default="", help="where to write the page (default: ROOT/index.html)")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("engines", help="list the engine presets")
    p.set_defaults(func=cmd_engines)
    p = sub.add_parser("simengine", help="serve the simulated engine (an OpenAI-compatible streaming server)")
    _add_sim_args(p)
    p.set_defaults(func=cmd_simengine)
    p = sub.add_parser("gpu-exporter", help="on the engine's host: serve the GPUs' power, energy, utilisation and "
                                            "memory from NVML under DCGM's names, for --gpu-metrics")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a "
                                                       "client on another machine)")
    p.add_argument("--port", type=int, default=9400, help="port (default 9400, dcgm-exporter's)")
    p.set_defaults(func=cmd_gpu_exporter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = parser.argv  # the command line as given, for run.json's provenance (redacted there)
    try:
        return int(args.func(args))
    except SettingsError as e:
        print(f"tokenswarm: error: {e}", file=sys.stderr)
        return int(ExitStatus.BAD_INPUT)
    except KeyboardInterrupt:
        return int(ExitStatus.INTERRUPTED)
    except Exception as e:  # report errors and the like: one line, not a traceback
        from tokenswarm.report import ReportError

        if isinstance(e, ReportError):
            print(f"tokenswarm: error: {e}", file=sys.stderr)
            return int(ExitStatus.BAD_INPUT)
        raise
