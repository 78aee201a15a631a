"""Preflight: check the target before sending load, and fail in seconds with one clear line.

Asks ``/v1/models`` (for the model name when none was given, and to catch a
rejected key), then sends one tiny real request (``max_tokens`` 1, or the dialect's smallest cap) through
the run's own dialect and endpoint, so a wrong path, a rejected key or an
unknown model show the server's own error text before any load is sent.

The models list is a plain request (:mod:`tokenswarm.http.plain`). The test
request goes through the measured path (:class:`tokenswarm.client.StreamCall`)
on purpose: it checks that the run's own client reads this server's stream,
with the dialect, framing and outcome rules every request of the run will meet.
"""

from __future__ import annotations

import json
from dataclasses import replace

from tokenswarm import provenance
from tokenswarm.client import Connection, StreamCall, request_head
from tokenswarm.datasets import Prompt
from tokenswarm.http.plain import BAD_RESPONSE, TIMEOUT, FetchError, PlainClient, Reply
from tokenswarm.measure import CONNECT_ERROR, EMPTY, HTTP_ERROR, STATUS_OK
from tokenswarm.settings import Settings

PREFLIGHT_TIMEOUT_S = 30.0


class PreflightError(RuntimeError):
    """The target cannot take the test: one line saying why."""


#: headers that carry a key (OpenAI's, Anthropic's and Azure's names); with none of them, no key was given
KEY_HEADERS = ("authorization", "x-api-key", "api-key")


def key_refused(settings: Settings, code: int, detail: str) -> str:
    """The line for an HTTP 401/403 (``detail``: the server's words and where): a key given was rejected, or
    none was given at all and how to give one."""
    if any(name.lower() in KEY_HEADERS for name in settings.headers):
        return f"the server rejected the API key (HTTP {code}: {detail})"
    return (f"the server asks for an API key and none was given (HTTP {code}: {detail}); pass --api-key KEY or set "
            "$TOKENSWARM_API_KEY (or $OPENAI_API_KEY)")


def _models_path(settings: Settings) -> str:
    return "/models" if settings.target.base_path.endswith("/v1") else "/v1/models"


def list_models(settings: Settings) -> list[str] | None:
    """Model ids from ``<base>/v1/models`` (None when the server has no such route or answers something else);
    raises :class:`PreflightError` when the server cannot be reached, does not answer in time, breaks HTTP or
    rejects the API key."""
    return _models(settings)[0]


def _models(settings: Settings) -> tuple[list[str] | None, Reply]:
    """:func:`list_models`'s answer and the whole reply it read (for the engine's metadata)."""
    path = _models_path(settings)
    url = settings.target.url(path)
    with PlainClient(settings.connect_timeout, min(settings.read_timeout, PREFLIGHT_TIMEOUT_S),
                     settings.headers) as client:
        try:
            reply = client.get(url)
        except FetchError as e:
            reason = settings.scrub(e.reason)
            if e.kind == TIMEOUT:
                raise PreflightError(f"{url} did not answer within {e.timeout_s:g}s") from None
            if e.kind == BAD_RESPONSE:
                raise PreflightError(f"{url} sent a bad HTTP response: {reason}") from None
            raise PreflightError(f"cannot reach {settings.base_url}: {reason}") from None
    if reply.status in (401, 403):
        raise PreflightError(key_refused(settings, reply.status, f"from {url}"))
    if reply.status != 200:
        return None, reply
    try:
        data = json.loads(reply.body)
        return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and "id" in m], reply
    except (ValueError, AttributeError, TypeError):
        return None, reply


def check(settings: Settings) -> Settings:
    """Raise :class:`PreflightError` unless the target answers a tiny request; returns settings with
    the model filled in from the server when none was given, and ``provenance`` with what the server tells
    about itself (``engine``: :func:`tokenswarm.provenance.engine_info`)."""
    models, models_reply = _models(settings)
    if settings.model_from_server:
        if not models:
            raise PreflightError(f"no --model given and {settings.target.url(_models_path(settings))} lists no model; "
                                 "pass --model NAME")
        settings = replace(settings, request=replace(settings.request, model=models[0]), model_from_server=False)
    conn = Connection(settings.target, settings.connect_timeout, min(settings.read_timeout, PREFLIGHT_TIMEOUT_S))
    whole = settings.dialect.whole(settings.request)
    head = request_head(settings.target, "POST", settings.endpoint,
                        {**settings.stream_headers(), "X-Sim-Fault": "none"})  # the simulated engine injects no fault
    probe = Prompt(id="preflight", text="Say hello.", max_tokens=settings.dialect.probe_tokens)
    body = json.dumps(settings.dialect.body(probe, settings.request)).encode()
    try:
        rec = StreamCall(conn, settings.dialect, head, body, "preflight", whole=whole,
                         await_usage=settings.await_usage).run()
    finally:
        conn.close()
    rec.error = settings.scrub(rec.error)
    where = settings.url
    if rec.status == CONNECT_ERROR:
        raise PreflightError(f"cannot reach {where}: {rec.error}")
    if rec.status == HTTP_ERROR:
        code = rec.http_status
        if code in (401, 403):
            raise PreflightError(key_refused(settings, code, f"{rec.error} ({where})"))
        if code == 404 and "model" not in rec.error.lower():
            hint = "set --endpoint or --engine"
            if settings.target.base_path:
                hint = (f"--host is the server's base URL ({settings.target.url('')} has the path "
                        f"{settings.target.base_path!r}); the request path comes from --endpoint or the preset")
            raise PreflightError(f"wrong path? {rec.error} ({where}); {hint}")
        offered = ""
        if "model" in rec.error.lower() and models and settings.request.model not in models:
            offered = f"; the server offers: {', '.join(models[:10])}{' ...' if len(models) > 10 else ''}"
        raise PreflightError(f"the server refused a test request: {rec.error} ({where}, model "
                             f"{settings.request.model!r}){offered}")
    if rec.status == EMPTY and rec.finish_reason and rec.http_status == 200:
        return settings  # the tiny cap went on hidden reasoning (OpenAI's o-series, gpt-5): the server answered
    if rec.status != STATUS_OK:
        raise PreflightError(f"a test request to {where} failed: {rec.status}: {rec.error}")
    engine = provenance.engine_info(settings.target, settings.headers, settings.request.model, models_reply,
                                    settings.connect_timeout, settings.scrub)
    return replace(settings, provenance={**settings.provenance, "engine": engine})
