"""What was run, from where, against what: run.json's ``provenance`` and the header of report.md/report.html.

A provenance record is a plain dict (it travels inside :class:`tokenswarm.settings.Settings` and is written
to run.json as it is)::

    {"date": "2026-12-07T10:58:02Z",               # UTC, ISO 8601: prepared; run.json: the test's start
     "tokenswarm": "0.9.0",
     "command": "tokenswarm sweep --api-key '<redacted>' ...",   # secrets redacted
     "client": {"host": "loadgen-1", "cpus": 16, "os": "Linux-6.8-x86_64-with-glibc2.39",
                "python": "3.12.3", "locust": "2.32.4"},
     "engine": {"version": "0.8.5", "version_source": "GET /version", "server": "uvicorn",
                "owned_by": "vllm", "model": "Qwen/Qwen2.5-0.5B", "model_root": "...",
                "max_model_len": 32768}}

The command line is what the ``tokenswarm`` command was given (:func:`command_line`): the value of
``--api-key`` and of each ``--header`` (its name kept), a URL's ``user:password@``, and any word holding a
secret the run sends (a header value, the key from ``$TOKENSWARM_API_KEY`` or ``$OPENAI_API_KEY``) read
``<redacted>``.

The engine's version is what the server tells and nothing else (:func:`engine_info`, asked during the
preflight): the first of ``GET /version`` (vLLM), ``/get_server_info`` and ``/server_info`` (SGLang),
``/info`` (Text Generation Inference) and ``/api/version`` (Ollama) that answers 200 with a JSON object
holding a ``version`` string; the ``Server`` header; and the served model's entry in ``/v1/models``
(``owned_by``, ``root``, ``max_model_len``). Only these named fields are kept (SGLang's server info also
lists its own ``api_key``). What the server does not tell reads ``"unknown"``. No probe can fail a run:
an error, a timeout or any other answer just leaves the field unknown, and no probe starts after
:data:`PROBE_BUDGET_S`.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokenswarm import __version__
from tokenswarm.http.plain import FetchError, PlainClient
from tokenswarm.http.target import Target

UNKNOWN = "unknown"
REDACTED = "<redacted>"
PROBE_TIMEOUT_S = 5.0  # each probe's connection and read
PROBE_BUDGET_S = 10.0  # no probe starts after this long: a slow server delays the start by so much at most
#: (path under the server's root, who answers it) in the order asked; the first with a version wins
VERSION_PROBES: tuple[tuple[str, str], ...] = (
    ("/version", "vLLM"),
    ("/get_server_info", "SGLang"),
    ("/server_info", "SGLang"),
    ("/info", "Text Generation Inference"),
    ("/api/version", "Ollama"),
)
#: options whose value is a secret, and how much of the value to hide (header: the value after its name)
SECRET_OPTIONS = ("--api-key", "--header")
SECRET_ENV = ("TOKENSWARM_API_KEY", "OPENAI_API_KEY")
MIN_SECRET_LEN = 6  # shorter strings are not searched for inside other words (they would hit ordinary text)


def _secret_option(word: str) -> str | None:
    """The secret option ``word`` names (``--api-key``, or an abbreviation argparse accepts), else None."""
    name = word.split("=", 1)[0]
    if len(name) < 4 or not name.startswith("--"):
        return None
    return next((opt for opt in SECRET_OPTIONS if opt.startswith(name)), None)


def _hide_header(value: str) -> str:
    """``Authorization: Bearer x`` -> ``Authorization: <redacted>`` (a value without a name: all hidden)."""
    name, sep, _rest = value.partition(":")
    return f"{name}: {REDACTED}" if sep and name.strip() and " " not in name.strip() else REDACTED


def _hide_userinfo(word: str) -> str:
    """A URL's ``user:password@`` as ``<redacted>@``; other words unchanged."""
    if "://" not in word or "@" not in word:
        return word
    prefix, eq, url = word.rpartition("=") if word.startswith("--") else ("", "", word)
    try:
        parts = urlsplit(url)
    except ValueError:
        return word
    if "@" not in parts.netloc:
        return word
    netloc = REDACTED + "@" + parts.netloc.rsplit("@", 1)[1]
    return prefix + eq + urlunsplit(parts._replace(netloc=netloc))


def redact_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """``argv`` with secrets replaced by ``<redacted>``: the values of ``--api-key`` and ``--header``
    (``--api-key=sk-1``, ``--api-key sk-1``, abbreviations too; a header keeps its name; also inside one
    word holding options, such as ``--sim-args '--api-key sk-1'``), a URL's userinfo, and every occurrence of
    a string in ``secrets`` (at least :data:`MIN_SECRET_LEN` characters) anywhere."""
    words = [str(w) for w in argv]
    hidden = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
    out: list[str] = []
    pending: str | None = None  # the secret option whose value is the next word
    for word in words:
        if pending is not None:
            out.append(_hide_header(word) if pending == "--header" else REDACTED)
            pending = None
            continue
        opt = _secret_option(word)
        if opt is not None:
            name, eq, value = word.partition("=")
            if eq:
                out.append(f"{name}={_hide_header(value) if opt == '--header' else REDACTED}")
            else:
                out.append(word)
                pending = opt
            continue
        if " " in word and any(opt in word for opt in SECRET_OPTIONS):  # options inside one word (--sim-args)
            try:
                word = " ".join(w if w == REDACTED else shlex.quote(w)
                                for w in redact_argv(shlex.split(word), hidden))
            except ValueError:  # unbalanced quotes: hide everything after the option
                word = word.split(" ", 1)[0] + " " + REDACTED
        word = _hide_userinfo(word)
        for s in hidden:
            word = word.replace(s, REDACTED)
        out.append(word)
    return out


def command_line(argv: Sequence[str], program: str = "tokenswarm", secrets: Iterable[str] = (),
                 environ: Mapping[str, str] | None = None) -> str:
    """``program`` and ``argv`` as one shell line (:func:`shlex.join`), secrets redacted (:func:`redact_argv`,
    with the keys in :data:`SECRET_ENV` from ``environ``, default ``os.environ``, added to ``secrets``)."""
    env = os.environ if environ is None else environ
    known = [*secrets, *(env.get(k, "") for k in SECRET_ENV)]
    known += [v.split()[-1] for v in list(known) if v and v.split()]  # "Bearer sk-1" hides "sk-1" alone too
    return shlex.join([program, *redact_argv(argv, known)])


def client_machine() -> dict[str, Any]:
    """This machine: ``host`` (name), ``cpus`` (logical), ``os`` (:func:`platform.platform`), ``python`` and
    ``locust`` (installed version, ``unknown`` when it is not installed)."""
    try:
        locust = metadata.version("locust")
    except metadata.PackageNotFoundError:
        locust = UNKNOWN
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(), "locust": locust}


def utc_iso(epoch_s: float | None = None) -> str:
    """``2026-12-07T10:58:02Z``: ``epoch_s`` (default now) in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch_s is None else epoch_s))


def start(argv: Sequence[str], secrets: Iterable[str] = (), program: str = "tokenswarm") -> dict[str, Any]:
    """The record as the command line knows it before the preflight: date, tokenswarm's version, the
    command (redacted), the client machine; ``engine`` comes from :func:`engine_info`."""
    return {"date": utc_iso(), "tokenswarm": __version__, "command": command_line(argv, program, secrets),
            "client": client_machine()}


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any, limit: int = 200) -> str | None:
    """A short one-line string from a JSON value (None for anything else)."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return " ".join(str(value).split())[:limit]
    return None


def model_entry(entries: Sequence[Any], model: str) -> dict[str, Any]:
    """The named fields of ``model``'s entry in a ``/v1/models`` ``data`` list (the first entry when none
    matches): ``owned_by``, ``model_root`` (its ``root``), ``max_model_len``; {} when there is none."""
    dicts = [e for e in entries if isinstance(e, dict)]
    entry = next((e for e in dicts if e.get("id") == model), dicts[0] if dicts else None)
    if entry is None:
        return {}
    out: dict[str, Any] = {}
    for key, name in (("owned_by", "owned_by"), ("root", "model_root")):
        text = _text(entry.get(key))
        if text:
            out[name] = text
    if isinstance(entry.get("max_model_len"), int) and not isinstance(entry.get("max_model_len"), bool):
        out["max_model_len"] = entry["max_model_len"]
    return out


def engine_info(target: Target, headers: Mapping[str, str], model: str, models_reply: Any = None,
                connect_timeout_s: float = PROBE_TIMEOUT_S, scrub: Any = None) -> dict[str, Any]:
    """What the server at ``target`` tells about itself (see the module's text): ``version`` (``unknown``
    when no probe answered one), ``version_source`` (``GET /version``; None), ``server`` (its ``Server``
    header; None), and from ``models_reply`` (the ``/v1/models`` :class:`~tokenswarm.http.plain.Reply`
    already fetched, or None) :func:`model_entry`'s fields for ``model``. ``headers`` go with each probe
    (the API key: some servers guard every route). ``scrub`` (a str -> str function) cleans each kept
    string. Never raises for what the server does or does not answer."""
    clean = scrub or (lambda s: s)
    info: dict[str, Any] = {"version": UNKNOWN, "version_source": None, "server": None}
    if models_reply is not None:
        info["server"] = _text(models_reply.headers.get("Server"))
        data = _json_object(models_reply.body) if models_reply.status == 200 else None
        if data is not None and isinstance(data.get("data"), list):
            info.update(model_entry(data["data"], model))
    root = Target(target.scheme, target.host, target.port, "")
    timeout = min(connect_timeout_s, PROBE_TIMEOUT_S)
    with PlainClient(timeout, PROBE_TIMEOUT_S, headers, max_body_bytes=4 * 1024 * 1024) as client:
        started = time.monotonic()
        for path, _who in VERSION_PROBES:
            if time.monotonic() - started > PROBE_BUDGET_S:
                break
            try:
                reply = client.get(root.url(path))
            except FetchError:
                continue
            if info["server"] is None:
                info["server"] = _text(reply.headers.get("Server"))
            data = _json_object(reply.body) if reply.status == 200 else None
            version = _text(data.get("version")) if data else None
            if version:
                info["version"], info["version_source"] = version, f"GET {path}"
                model_path = _text(data.get("model_path") or data.get("model_id"))  # SGLang, TGI
                if model_path and "model_root" not in info:
                    info["model_root"] = model_path
                break
    return {k: clean(v) if isinstance(v, str) else v for k, v in info.items()}


def engine_line(engine: Mapping[str, Any] | None, preset: str = "") -> str:
    """``vllm 0.8.5 (GET /version; server uvicorn; max_model_len 32768)``, or ``unknown``: the engine as the
    report's header names it (``preset``, the ``--engine`` preset, else the model list's ``owned_by``)."""
    e = dict(engine or {})
    version = str(e.get("version") or UNKNOWN)
    name = str(preset or e.get("owned_by") or "").strip()
    head = f"{name} {version}" if name and version != UNKNOWN else (f"{name}, version unknown" if name else
                                                                    version)
    extra = [str(e["version_source"])] if e.get("version_source") else []
    if e.get("server"):
        extra.append(f"server {e['server']}")
    if e.get("max_model_len"):
        extra.append(f"max_model_len {e['max_model_len']}")
    return head + (f" ({'; '.join(extra)})" if extra else "")
