"""Wires tokenswarm into Locust's events; the work is done by this process's role.

Importing :mod:`tokenswarm.loadgen` registers these listeners (the Locust
plugin pattern), so a locustfile that imports tokenswarm's users gets the
whole machinery: ``--engine`` and friends on the command line and in the web
UI, a run folder per test, requests.csv, run.json and the report.

At ``init`` the role of this process is made once (:func:`tokenswarm.loadgen.roles.make_role`:
local, master or worker) and set as ``environment.tokenswarm``; every later event is forwarded to it.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from locust import events
from locust.env import Environment

from tokenswarm.loadgen import workarounds
from tokenswarm.loadgen.roles import Role, make_role
from tokenswarm.options import add_options


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    add_options(parser, locust=True)


def role_of(environment: Environment) -> Role | None:
    """This process's role; None when tokenswarm is not running it (no options, no runner)."""
    return getattr(environment, "tokenswarm", None)


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
    role = make_role(environment, web_ui)
    environment.tokenswarm = role
    if role is not None:
        workarounds.quiet_spawn_rate_warning()  # each level's users start within a second on purpose
    if role is not None and web_ui is not None and role.name != "worker":
        from tokenswarm.loadgen.webui import install_web_ui

        install_web_ui(web_ui, environment)


def _forward(event: str) -> Any:
    """A listener that hands Locust's ``event`` to this process's role (its method of that name)."""

    def listener(environment: Environment, **_kw: Any) -> None:
        role = role_of(environment)
        if role is not None:
            getattr(role, event)()

    listener.__name__ = f"_{event}"
    return listener


events.test_start.add_listener(_forward("test_start"))
events.test_stopping.add_listener(_forward("test_stopping"))
events.test_stop.add_listener(_forward("test_stop"))


@events.spawning_complete.add_listener
def _spawned(**_kw: Any) -> None:
    """Users are up: freeze what exists, so the collector's full passes during the run (measured here:
    20-65 ms with 256 users, a pause every stream would see as latency) skip these objects. No collection
    first: with requests in flight that would be the very pause this avoids."""
    gc.freeze()
