"""A run's provenance as the report reads it: run.json's ``provenance`` (:mod:`tokenswarm.provenance`), with
what older run folders recorded elsewhere as the fallback, and ``unknown`` for the rest.

:func:`of_run` gives one flat record, the same for the report's header (:func:`header_facts`) and the runs
index (:mod:`tokenswarm.report.runs`)::

    {"date": "2026-12-07T10:58:02Z", "tokenswarm": "0.9.0", "command": "tokenswarm sweep ...",
     "client": "loadgen-1, 16 CPUs, Linux-6.8-x86_64, Python 3.12.3", "engine": "vllm 0.8.5 (GET /version ...)",
     "engine_version": "0.8.5", "engine_name": "vllm", "model": "Qwen/Qwen2.5-0.5B"}

Fallbacks: the date from run.json ``started`` (epoch seconds), tokenswarm's version from ``versions`` or
``settings.tokenswarm_version``, the client from ``host`` and ``versions.python``, the engine's name from
``settings.engine`` (the preset). Nothing here reads a secret: the command line was redacted when it was
recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenswarm.provenance import UNKNOWN, engine_line, utc_iso


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def client_line(client: Mapping[str, Any]) -> str:
    """``loadgen-1, 16 CPUs, Linux-6.8-x86_64, Python 3.12.3``; ``unknown`` when nothing is known."""
    parts = []
    if client.get("host"):
        parts.append(str(client["host"]))
    if client.get("cpus"):
        parts.append(f"{client['cpus']} CPUs")
    if client.get("os"):
        parts.append(str(client["os"]))
    if client.get("python"):
        parts.append(f"Python {client['python']}")
    if client.get("locust") and client.get("locust") != UNKNOWN:
        parts.append(f"Locust {client['locust']}")
    return ", ".join(parts) or UNKNOWN


def of_run(meta: Mapping[str, Any]) -> dict[str, str]:
    """The flat provenance record of a run (see the module's text) from run.json's content ``meta``."""
    p = _dict(meta.get("provenance"))
    s = _dict(meta.get("settings"))
    versions = _dict(meta.get("versions"))
    started = meta.get("started")
    date = p.get("date") or (utc_iso(float(started)) if isinstance(started, (int, float)) else None)
    client = _dict(p.get("client"))
    if not client:
        host = _dict(meta.get("host"))
        client = {"host": host.get("name"), "cpus": host.get("cpus"), "os": host.get("platform"),
                  "python": versions.get("python"), "locust": versions.get("locust")}
    engine = _dict(p.get("engine"))
    preset = str(s.get("engine") or "")
    return {
        "date": str(date or UNKNOWN),
        "tokenswarm": str(p.get("tokenswarm") or versions.get("tokenswarm") or s.get("tokenswarm_version")
                          or UNKNOWN),
        "command": str(p.get("command") or UNKNOWN),
        "client": client_line(client),
        "engine": engine_line(engine, preset) if engine else (f"{preset}, version unknown" if preset else UNKNOWN),
        "engine_name": str(preset or engine.get("owned_by") or UNKNOWN),
        "engine_version": str(engine.get("version") or UNKNOWN),
        "model": str(s.get("model") or UNKNOWN),
    }


def header_facts(meta: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """The report's header: (name, value, value is code) for date, tokenswarm, command, client and engine."""
    r = of_run(meta)
    return [("Date", r["date"].replace("T", " ").replace("Z", " UTC"), False),
            ("tokenswarm", r["tokenswarm"], False),
            ("Command", r["command"], r["command"] != UNKNOWN),
            ("Client", r["client"], False),
            ("Engine", r["engine"], False),
            ("Model", r["model"], False)]
