"""Locust's web UI, made tokenswarm's: a start that fails says why in the start form, the form asks for the
options that matter, and the tokenswarm tab shows per-level figures and charts over time.

* **The start check.** Pressing Start posts the form to ``/swarm``. Before Locust's own view runs, a hook
  builds the settings the test would start with (the command line's options updated with the form's values,
  as Locust's ``swarm()`` applies them), reads one prompt of a dataset file, loads the tokenizer and runs the
  preflight (:func:`tokenswarm.preflight.check`). A problem answers ``{"success": false, "message": <one
  line>}``, which Locust's form shows, and no test starts; the line says it on the terminal too. A preflight
  passed here is handed to the role with the settings it checked (:meth:`WriterRole.accept
  <tokenswarm.loadgen.roles.WriterRole.accept>`), so the test start takes them as they are and does not ask
  the server again. What can still fail at the test start (the run folder, a worker's share of the dataset)
  reaches Locust's Exceptions tab and the tokenswarm tab (:meth:`Role.fail <tokenswarm.loadgen.roles.Role.fail>`).
* **The form** shows the options whose :class:`tokenswarm.options.Opt` has a ``web_ui`` text, in the order
  they are declared, labelled with that text (units included), with drop-downs for ``web_choices``; a sweep
  locustfile gets the sweep's options, a one-level one ``--duration`` and ``--requests``. The others keep
  their flag, ``TOKENSWARM_*`` variable and config-file value.
* **The tokenswarm tab**: Locust's extended table, one row per level
  (:meth:`~tokenswarm.loadgen.controller.RunController.ui_table`; once the report is built, each level with
  the report's marks, ``16*``, and what they mean), above it the run folder and, once the test has ended, a
  link to its report.html, which this web UI serves (``tokenswarm/report/<run id>/report.html``: that run's
  report files only, :data:`SERVED`), and the charts that webui.js
  (``tokenswarm/ui.js``, added to Locust's page) draws as inline SVG from ``tokenswarm/series``: the run's
  samples of its live figures (:class:`tokenswarm.loadgen.livewatch.Series`). Both are behind the web login
  when there is one; nothing is fetched from anywhere else.
* ``/metrics``: tokenswarm's Prometheus metrics (not behind the login: Prometheus scrapes it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from tokenswarm.loadgen import workarounds
from tokenswarm.options import BY_DEST, OPTIONS
from tokenswarm.runfolder import LEVELS_CSV, REPORT_HTML, REPORT_MD
from tokenswarm.settings import SettingsError

if TYPE_CHECKING:
    from locust.env import Environment

log = logging.getLogger("tokenswarm")

UI_TAB = "tokenswarm"
UI_STRUCTURE = [
    {"key": "level", "title": "Level"}, {"key": "ok", "title": "OK"}, {"key": "failed", "title": "Failed"},
    {"key": "failed_pct", "title": "Failed %"},
    {"key": "reqs", "title": "Req/s"}, {"key": "tokens", "title": "Output tok/s"},
    {"key": "ttft50", "title": "TTFT p50 (ms)"}, {"key": "ttft99", "title": "TTFT p99 (ms)"},
    {"key": "tpot50", "title": "TPOT p50 (ms)"}, {"key": "tpot99", "title": "TPOT p99 (ms)"},
    {"key": "client", "title": "Client"},
]
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webui.js")
SCRIPT_PATH = "/tokenswarm/ui.js"
SERIES_PATH = "/tokenswarm/series"
REPORT_PATH = "/tokenswarm/report"  # + /<run id>/<file>: the run folder's report, once the test has ended
#: the run folder's files the web UI serves (report.html holds its plots inline)
SERVED = {REPORT_HTML: "text/html", REPORT_MD: "text/markdown", LEVELS_CSV: "text/csv",
          "summary.json": "application/json"}


# -- the form ------------------------------------------------------------------------------
def form_fields(extra_options: dict[str, dict[str, Any]], sweep: bool) -> dict[str, dict[str, Any]]:
    """Locust's custom-parameter fields (``extra_options``, as ``ui_extra_args_dict`` gives them) as the form
    shows them: tokenswarm's in declaration order with their web text and drop-downs, those of a sweep or of
    a one-level test only where they apply, then any other plugin's as they were."""
    out: dict[str, dict[str, Any]] = {}
    kind = "sweep" if sweep else "level"
    for opt in OPTIONS:
        field = extra_options.get(opt.dest)
        if not opt.web_ui or field is None or (opt.web_for and opt.web_for != kind):
            continue
        field = {**field, "help_text": opt.web_ui}
        if opt.web_choices is not None:
            choices = list(opt.web_choices())
            if field.get("default_value") not in choices:  # a value given elsewhere stays selectable
                choices.insert(0, field.get("default_value"))
            field["choices"] = choices
        out[opt.dest] = field
    for key, field in extra_options.items():
        if key not in BY_DEST:
            out[key] = field
    return out


def form_value(current: Any, raw: str) -> Any:
    """A form field's text as Locust's ``swarm()`` will store it: typed like the option's current value.
    ValueError when the text is not of that type."""
    if isinstance(current, bool):
        return raw == "true"
    if current is None:
        return raw
    if isinstance(current, list):
        return raw.split(",")
    return type(current)(raw)


def form_options(environment: Environment, form: Any) -> tuple[argparse.Namespace, str | None]:
    """The options and host the start form asks for: the current ones with the form's values in. A value of
    the wrong type is a SettingsError naming the option."""
    values = dict(vars(environment.parsed_options))
    for key, raw in form.items():
        opt = BY_DEST.get(key)
        if opt is None or key not in values:
            continue
        try:
            values[key] = form_value(values[key], raw)
        except ValueError:
            kind = "a whole number" if isinstance(values[key], int) else "a number"
            raise SettingsError(f"bad {opt.flag} {raw!r}: must be {kind}") from None
    host = form.get("host")
    if host is not None:
        host = str(host).replace("<", "").replace(">", "")  # as Locust stores it
    return argparse.Namespace(**values), host


def start_problem(environment: Environment, form: Any) -> str | None:
    """Why the test the start form asks for cannot start, in one line with secrets scrubbed; None when it
    can (a preflight that passed is remembered for the test start)."""
    from tokenswarm.loadgen.roles import dataset_problem
    from tokenswarm.preflight import PreflightError, check
    from tokenswarm.settings import with_trace

    role = environment.tokenswarm
    try:
        opts, host = form_options(environment, form)
        settings = with_trace(role.build_settings(opts, host))
        dataset_problem(settings)
    except SettingsError as e:
        return str(e)
    if getattr(opts, "no_preflight", False):
        role.accept(settings, None)
        return None
    try:
        checked = check(settings)
    except PreflightError as e:
        return settings.scrub(str(e))
    role.accept(settings, checked)
    return None


def _is_sweep(environment: Environment) -> bool:
    from tokenswarm.loadgen.shapes import LevelShape

    return isinstance(environment.shape_class, LevelShape)


# -- the charts' data ---------------------------------------------------------------------
def chart_data(environment: Environment, since: float) -> dict[str, Any]:
    """What /tokenswarm/series answers: the current (or last) test's samples after epoch ``since``, why the
    last start failed (None when it did not), the runner's state."""
    role = environment.tokenswarm
    run = role.run
    data = run.chart_data(since) if run is not None else {"run_id": None, "started": None, "interval_s": None,
                                                          "finished": None, "samples": []}
    data["error"] = role.start_error
    data["state"] = getattr(environment.runner, "state", None)
    data["run_dir"] = os.path.abspath(run.run_dir) if run is not None else None
    # the report, served by this web UI once the test has written it (a path relative to the page)
    data["report"] = f"{REPORT_PATH.lstrip('/')}/{run.run_id}/{REPORT_HTML}" if (
        run is not None and run.report_file()) else None
    data["marks"] = run.report_marks()[1] if run is not None else []
    return data


def report_path(environment: Environment, run_id: str, name: str) -> str | None:
    """The file ``name`` of the current (or last) test's run folder, when ``run_id`` is that test's and the file
    is one of :data:`SERVED` that exists; else None. Only those files: nothing else on the disk is served."""
    run = environment.tokenswarm.run
    if run is None or run_id != run.run_id or name not in SERVED or run.report_file() is None:
        return None
    path = os.path.join(run.run_dir, name)
    return path if os.path.isfile(path) else None


# -- installing it -------------------------------------------------------------------------
def install_web_ui(web_ui: Any, environment: Environment) -> None:
    """Add the start check, the form's fields, the tokenswarm tab (table and charts) and /metrics to Locust's
    web UI."""
    from flask import Blueprint, Response, jsonify, request
    from flask_login import current_user
    from locust.runners import STATE_RUNNING, STATE_SPAWNING

    with open(SCRIPT, encoding="utf-8") as fh:
        script = fh.read()
    opts = environment.parsed_options
    base = (getattr(opts, "web_base_path", None) or "").rstrip("/")

    web_ui.template_args["extendedTabs"] = [{"title": "tokenswarm", "key": UI_TAB}]
    web_ui.template_args["extendedTables"] = [{"key": UI_TAB, "structure": UI_STRUCTURE}]
    workarounds.form_fields_in_order(web_ui, lambda extra: form_fields(extra, _is_sweep(environment)))
    role = environment.tokenswarm

    def check_start(form: Any) -> Any:
        if web_ui.web_login and not current_user.is_authenticated:
            return None  # Locust's view sends it to the login page
        runner = environment.runner
        if runner is None or runner.state in (STATE_SPAWNING, STATE_RUNNING):
            return None  # a running test's new user count: nothing new to check
        try:
            problem = start_problem(environment, form)
        except Exception:  # never stand in the way of a start over a fault of this check's own
            log.exception("tokenswarm: the start check failed; starting without it")
            return None
        role.start_error = problem
        if problem is None:
            return None
        print(f"tokenswarm: error: {problem}", file=sys.stderr, flush=True)
        return jsonify({"success": False, "message": problem, "host": environment.host})

    workarounds.before_start(web_ui, check_start)
    workarounds.extend_pages(web_ui, f'<script src=".{SCRIPT_PATH}"></script>',
                             lambda: role.run.ui_table() if role.run is not None else [], UI_TAB)

    bp = Blueprint("tokenswarm_ui", __name__, url_prefix=base or None)

    @bp.route(SCRIPT_PATH)
    @web_ui.auth_required_if_enabled
    def _script() -> Any:
        return Response(script, mimetype="application/javascript", headers={"Cache-Control": "no-cache"})

    @bp.route(SERIES_PATH)
    @web_ui.auth_required_if_enabled
    def _series() -> Any:
        try:
            since = float(request.args.get("since", "0") or 0)
        except ValueError:
            since = 0.0
        return jsonify(chart_data(environment, since))

    @bp.route(REPORT_PATH + "/<run_id>/<name>")
    @web_ui.auth_required_if_enabled
    def _report(run_id: str, name: str) -> Any:
        path = report_path(environment, run_id, name)
        if path is None:
            return Response("no such report: the test is running, or another test has started since\n",
                            status=404, mimetype="text/plain")
        with open(path, "rb") as fh:
            return Response(fh.read(), mimetype=SERVED[name], headers={"Cache-Control": "no-cache"})

    web_ui.app.register_blueprint(bp)

    @web_ui.app.route("/metrics")
    def _metrics() -> Any:  # not behind the login: Prometheus scrapes it
        exporter = role.exporter
        if exporter is None:
            return Response("# no test has started yet\n", mimetype="text/plain")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if role.run is not None:
            role.run.live_figures()  # every row received so far folded in
        return Response(generate_latest(exporter.registry), mimetype=CONTENT_TYPE_LATEST)
