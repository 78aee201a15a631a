"""Validated run settings: option values + engine preset -> one typed object.

:func:`build` is where bad input becomes a one-line :class:`SettingsError`
naming the option and the value. :meth:`Settings.public` is the redacted
form written to run.json: API keys and header values never leave memory.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import secrets
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any

from tokenswarm import __version__, capture
from tokenswarm.datasets import DatasetSpec, validate_spec
from tokenswarm.dialects import DIALECTS, Dialect, RequestOptions, UnknownDialect, get_dialect
from tokenswarm.enginemetrics import metrics_url
from tokenswarm.errors import SettingsError
from tokenswarm.http.target import BadURL, Target
from tokenswarm.media import MediaSpec, parse_size
from tokenswarm.media import check as check_media
from tokenswarm.options import OPTIONS
from tokenswarm.presets import Preset, UnknownPreset, get_preset
from tokenswarm.priority import PRIORITIES
from tokenswarm.strategies import KINDS as ARRIVAL_KINDS
from tokenswarm.sweep import CONCURRENCY, RATE, SweepPlan, level_str, parse_levels, parse_slo

TIMINGS = ("read", "capture")  # --timing: the reads' kernel stamps; a kernel packet capture (tokenswarm.capture)

REDACTED = "<redacted>"
#: the share of the shortest timed level that a closed-loop level's first sends may be spread over
STAGGER_SHARE = 0.2


@dataclass
class Settings:
    preset: Preset  # --engine: the preset's dialect, port, path and metrics path
    target: Target
    dialect: Dialect
    endpoint: str
    request: RequestOptions
    route: Route = field(default_factory=lambda: Route())  # the target as given, to derive the above again
    headers: dict[str, str] = field(default_factory=dict)  # includes Authorization: never print
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    accept_encoding: str = "identity"  # --accept-encoding: the content coding asked for
    backoff: bool = True  # wait what 429/503 ask for (Retry-After, else backoff); --no-backoff: off
    max_backoff_s: float = 60.0
    input_len: int = 128
    seed: int = 0
    seed_drawn: bool = False  # the seed was drawn for this run (no --seed)
    requests: int = 0
    duration_s: float | None = None
    out: str = ""
    run_name: str = ""
    max_fail_ratio: float = 0.0
    model_from_server: bool = False  # the model name is still to be asked from /v1/models
    plan: SweepPlan | None = None  # a sweep (--levels / --rates); None: one level set by the user count
    warmup_s: float = 0.0
    #: per-level warm-ups (20 % of each level) when levels last differently and --warmup is not given
    warmups_s: list[float] | None = None
    arrival: str = "poisson"
    burstiness: float = 1.0
    slo: dict[str, float] = field(default_factory=dict)
    slo_attainment: float = 0.99
    knee_pct: float = 10.0
    server_metrics: str = ""  # URL of the engine's metrics ("" : none)
    server_metrics_interval: float = 2.0
    gpu_metrics: str = ""  # URL of a DCGM exporter's metrics ("" : none), sampled into gpu_metrics.csv
    metrics_port: int = 0
    metrics_bind: str = "127.0.0.1"
    progress_interval: float = 5.0
    priority: str = "normal"  # the load-generating processes' scheduling (tokenswarm.priority)
    timing: str = "read"  # what times each response: the reads' kernel stamps, or a packet capture (capture.py)
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    tokenizer: str = ""  # path of a tokenizer.json / model folder ("" : none)
    prefix_len: int = 0  # shared-prefix workload (0: off)
    num_prefixes: int = 1
    turns: int = 0  # multi-turn workload (0: off)
    turn_input_len: int = 64
    think_time: float = 0.0
    trace: str = ""  # trace replay (a file)
    trace_speed: float = 1.0
    trace_requests: int = 0  # known once with_trace() read the trace
    max_concurrency: int = 256  # rate mode and traces: users waiting for their send times
    warmup_given: bool = False  # --warmup was given (else 20 % of each level)
    cancel_rate: float = 0.0
    stagger: bool = True  # closed loop: a level's new users spread their first sends over a request lifetime
    capacity: bool = False  # search the highest level whose SLOs hold (the plan's levels: the bracket)
    max_probes: int = 20
    resolution_pct: float = 5.0
    precision_pct: float = 0.0  # run each level until its intervals are this narrow (0: off)
    min_lifetimes: float = 0.0  # run each level until its window holds this many mean request lifetimes (0: off)
    max_level_duration_s: float | None = None  # --precision, --min-lifetimes, capacity: the longest a level runs
    preflight: bool = True  # check the target before the load starts (cleared once a check passed)
    #: what was run, from where, against what (:mod:`tokenswarm.provenance`): run.json's ``provenance``
    provenance: dict[str, Any] = field(default_factory=dict)
    media: MediaSpec = field(default_factory=MediaSpec)  # images and audio per request (--images, --audio-seconds)

    @property
    def mode(self) -> str:
        """RATE for a rate sweep or a trace replay (open loop), else CONCURRENCY (closed loop)."""
        if self.trace:
            return RATE
        return self.plan.mode if self.plan is not None else CONCURRENCY

    def stagger_spread_s(self) -> float | None:
        """The longest a closed-loop level's first sends are spread over: a fifth of the shortest timed level
        (the run's ``--duration``, else the sweep's shortest level), so the ramp leaves most of each level to
        measure. None when no level is timed (``--requests`` runs end by count: the spread is then one request
        lifetime, learnt from a first request)."""
        shortest = self.plan.shortest() if self.plan is not None else self.duration_s
        return STAGGER_SHARE * shortest if shortest else None

    @property
    def base_url(self) -> str:
        return self.target.url("")

    @property
    def url(self) -> str:
        return self.target.url(self.endpoint)

    def stream_headers(self) -> dict[str, str]:
        """The headers of every measured request (preflight included), before ``Content-Length``: JSON in, an
        event stream out (JSON for a whole answer: embeddings, rerank, ``--no-stream``), the content coding asked
        for (``--accept-encoding``; identity unless told), then
        ``--header`` and the API key, which may replace any of them (names compared case-insensitively)."""
        mine = {k.lower() for k in self.headers}
        accept = "application/json" if self.dialect.whole(self.request) else "text/event-stream"
        base = {"Content-Type": "application/json", "Accept": accept, "Accept-Encoding": self.accept_encoding}
        return {**{k: v for k, v in base.items() if k.lower() not in mine}, **self.headers}

    @property
    def await_usage(self) -> bool:
        """The usage was asked for and comes in its own event after the finish reason
        (:attr:`tokenswarm.dialects.base.Dialect.usage_after_finish`): a stream is complete once both are in."""
        return bool(self.request.include_usage and self.dialect.usage_after_finish
                    and not self.dialect.whole(self.request))

    def workload(self) -> dict[str, Any]:
        """The workload's shape, for run.json and the report."""
        if self.trace:
            return {"kind": "trace", "trace": self.trace, "speed": self.trace_speed, "requests": self.trace_requests}
        if self.turns:
            return {"kind": "multi-turn", "turns": self.turns, "turn_input_len": self.turn_input_len,
                    "think_time_s": self.think_time, "cancel_rate": self.cancel_rate}
        if self.prefix_len:
            return {"kind": "shared-prefix", "prefix_len": self.prefix_len, "num_prefixes": self.num_prefixes,
                    "cancel_rate": self.cancel_rate}
        return {"kind": "single", "cancel_rate": self.cancel_rate}

    def scrub(self, text: str) -> str:
        """``text`` with every header value (API key included) replaced by ``<redacted>``."""
        for value in self.headers.values():
            for secret in {value, value.split()[-1] if value.split() else value}:
                if len(secret) >= 6 and secret in text:
                    text = text.replace(secret, REDACTED)
        return text

    def warmup_at(self, index: int | None) -> float:
        """The warm-up of the level at ``index`` of the plan (None: a single level)."""
        if self.warmups_s and index is not None and index < len(self.warmups_s):
            return self.warmups_s[index]
        return self.warmup_s

    def public(self) -> dict[str, Any]:
        """Everything worth recording about the settings, with secrets redacted."""
        return {
            "engine": self.preset.name,
            "base_url": self.base_url,
            "endpoint": self.endpoint,
            "dialect": self.dialect.name,
            "model": self.request.model,
            "max_tokens": self.request.max_tokens,
            "input_len": self.input_len,
            "dataset": {k: v for k, v in self.dataset.__dict__.items() if v not in ("", 0, 0.0) or k == "name"},
            "tokenizer": self.tokenizer or None,
            "workload": self.workload(),
            "temperature": self.request.temperature,
            "ignore_eos": self.request.ignore_eos,
            "stream_usage": self.request.include_usage,
            "stream": not self.dialect.whole(self.request),
            "batch_size": self.request.batch_size,
            "media": self.media.describe() or None,
            "max_tokens_field": self.request.max_tokens_field or self.dialect.max_tokens_field,
            "extra_body": self.request.extra_body,
            "headers": {k: REDACTED for k in self.headers},
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "accept_encoding": self.accept_encoding,
            "timing": self.timing,
            "backoff": self.backoff,
            "max_backoff_s": self.max_backoff_s,
            "seed": self.seed,
            "seed_drawn": self.seed_drawn,
            "requests": self.requests,
            "duration_s": self.duration_s,
            "run_name": self.run_name,
            "max_fail_ratio": self.max_fail_ratio,
            "mode": self.mode,
            "levels": [level_str(v) for v in self.plan.levels] if self.plan and self.plan.mode == CONCURRENCY else None,
            "rates": [level_str(v) for v in self.plan.levels] if self.plan and self.plan.mode == RATE else None,
            "level_duration_s": self.plan.level_duration_s if self.plan else None,
            "level_durations_s": self.plan.level_durations_s if self.plan else None,
            "level_requests": self.plan.level_requests if self.plan else None,
            "level_requests_each": self.plan.level_requests_each if self.plan else None,
            "max_concurrency": self.plan.max_concurrency if self.plan and self.plan.mode == RATE else None,
            "arrival": self.arrival if self.mode == RATE else None,
            "burstiness": self.burstiness if self.mode == RATE else None,
            "warmup_s": self.warmup_s,
            "warmups_s": self.warmups_s,
            "starts": ("spread over a request lifetime, at most a fifth of a level" if self.stagger else "together")
            if self.mode != RATE else "scheduled",
            "precision_pct": self.precision_pct or None,
            "min_lifetimes": self.min_lifetimes or None,
            "capacity": {"bracket": [level_str(v) for v in self.plan.levels], "max_probes": self.max_probes,
                         "resolution_pct": self.resolution_pct} if self.capacity and self.plan else None,
            "max_level_duration_s": self.max_level_duration_s,
            "slo": self.slo or None,
            "slo_attainment": self.slo_attainment,
            "knee_pct": self.knee_pct,
            "server_metrics": _scrape_url(self.server_metrics) if self.server_metrics else None,  # no userinfo
            "gpu_metrics": _scrape_url(self.gpu_metrics) if self.gpu_metrics else None,
            "tokenswarm_version": __version__,
        }


_HEADER_RE = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*:\s*(.*)$")


def parse_header(raw: str) -> tuple[str, str]:
    """``Name: value`` as (name, value). An error names the header by its first word only: what follows may be
    a secret (``Authorization Bearer sk-...`` with the colon forgotten)."""
    m = _HEADER_RE.match(raw.strip())
    if not m or "\r" in raw or "\n" in raw.strip():
        words = re.split(r"[\s:]", raw.strip(), maxsplit=1)
        name = words[0][:40] if words and words[0] else "(empty)"
        raise SettingsError(f"bad --header starting {name!r}: expected 'Name: value' (the value is not shown)")
    return m.group(1), m.group(2)


def api_key(opts: Any, environ: dict[str, str] | None = None, dialect: str = "") -> str:
    """--api-key, else $TOKENSWARM_API_KEY, else $ANTHROPIC_API_KEY (the ``anthropic-messages`` dialect), else
    $OPENAI_API_KEY."""
    environ = os.environ if environ is None else environ
    return (getattr(opts, "api_key", "") or environ.get("TOKENSWARM_API_KEY") or
            (environ.get("ANTHROPIC_API_KEY") if dialect == "anthropic-messages" else "") or
            environ.get("OPENAI_API_KEY") or "")


def dialect_headers(headers: dict[str, str], dialect: Dialect, key: str) -> dict[str, str]:
    """``headers`` (the user's, by ``--header``) with what ``dialect`` needs added: its fixed headers and the
    API ``key`` in its auth header (``Authorization: Bearer``, Anthropic's ``x-api-key``). A header the user
    gave is kept as given (a gateway fronting Anthropic with a bearer token: ``--header 'Authorization: ...'``
    and no key)."""
    given = {k.lower() for k in headers}
    out = dict(headers)
    for name, value in dialect.request_headers(key).items():
        if name.lower() not in given:
            out[name] = value
    return out


def max_tokens_field(opts: Any, preset: Preset, dialect: Dialect) -> str:
    """The body field capping the output: ``--max-tokens-field``, else the preset's when the run speaks the
    preset's own dialect (``max_completion_tokens`` for ``openai``'s chat), else "" (the dialect's own)."""
    given = getattr(opts, "max_tokens_field", "") or ""
    if given:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", given):
            raise SettingsError(f"bad --max-tokens-field {given!r}: must be a field name such as "
                                "max_completion_tokens")
        return given
    return preset.max_tokens_field if dialect.name == preset.dialect else ""


def from_options(opts: Any, host: str | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from parsed option values (an argparse or Locust namespace) and the target's base URL ``host``
    (None: the preset's). The one place options become settings: a process that runs a test builds them once
    (:mod:`tokenswarm.cli` for ``tokenswarm run|sweep``, Locust's process when started directly or by the web
    UI) and hands them on whole (:func:`to_wire`). SettingsError, one line naming option and value, for bad
    input."""
    environ = os.environ if environ is None else environ
    check_options(opts)
    try:
        preset = get_preset(opts.engine or "sim")
    except UnknownPreset as e:
        raise SettingsError(str(e)) from None
    name = opts.dialect or preset.dialect
    config = {}
    if name == "template":
        config = {"body_template": opts.body_template, "text_path": opts.text_path, "text_mode": opts.text_mode}
    try:
        dialect = get_dialect(name, **config)
    except UnknownDialect as e:
        raise SettingsError(str(e)) from None
    if getattr(opts, "no_stream", False) and dialect.streams and type(dialect).parse_whole is Dialect.parse_whole:
        whole = ", ".join(n for n, d in DIALECTS.items() if d.parse_whole is not Dialect.parse_whole and d.streams)
        raise SettingsError(f"bad --no-stream: the {dialect.name} dialect reads streams only (whole answers: "
                            f"{whole})")
    if (getattr(opts, "batch_size", 1) or 1) > 1 and not dialect.batched:
        raise SettingsError(f"bad --batch-size {opts.batch_size}: the {dialect.name} dialect sends one input per "
                            "request (batched: openai-embeddings, rerank)")
    media = _media(opts, dialect)
    duration_s = parse_duration(opts.duration) if opts.duration else None
    extra: dict[str, Any] = {}
    if opts.extra_body:
        try:
            extra = json.loads(opts.extra_body)
        except ValueError as e:
            raise SettingsError(f"bad --extra-body: not JSON ({e})") from None
        if not isinstance(extra, dict):
            raise SettingsError("bad --extra-body: must be a JSON object")
    headers: dict[str, str] = {}
    raw_headers = list(opts.header or [])
    env_headers = environ.get("TOKENSWARM_HEADER", "")
    raw_headers = [h for h in env_headers.splitlines() if h.strip()] + [h for h in raw_headers if h not in env_headers]
    for raw in raw_headers:
        hname, value = parse_header(raw)
        headers[hname] = value
    headers = dialect_headers(headers, dialect, api_key(opts, environ, dialect.name))
    seed, seed_drawn = parse_seed(opts)
    spec = DatasetSpec(name=opts.dataset or "random", path=opts.dataset_path, input_len=opts.input_len,
                       output_len=opts.output_len, range_ratio=opts.range_ratio, prompt_field=opts.prompt_field,
                       min_prompt_tokens=opts.min_prompt_tokens, max_prompt_tokens=opts.max_prompt_tokens,
                       seed=seed)
    _check_workload(opts)
    validate_spec(spec)
    if opts.trace:
        # the plan (one open-loop level at the trace's mean rate) comes from the file: with_trace() reads it
        plan = None
        if duration_s is not None or opts.requests or opts.levels or opts.rates:
            raise SettingsError("--trace sets the arrivals and the length: leave out --duration, --requests, "
                                "--levels and --rates")
    else:
        plan = _plan(opts, duration_s)
    if getattr(opts, "capacity", False) and (plan is None or not plan.capacity):
        raise SettingsError("a capacity search (--capacity) needs its bracket: --levels LOW,HIGH (users) or "
                            "--rates LOW,HIGH (req/s), and --level-duration or --level-requests")
    for flag, value in (("--precision", opts.precision), ("--min-lifetimes", getattr(opts, "min_lifetimes", 0.0))):
        if value and plan is None:
            raise SettingsError(f"{flag} {value:g} ends each level of a sweep: give --levels or --rates with "
                                "--level-duration (for one level: --levels N)")
    warmup = opts.warmup
    warmups = None
    shortest = plan.shortest() if plan is not None else duration_s
    if warmup >= 0 and shortest and warmup >= shortest:
        raise SettingsError(f"bad --warmup {warmup:g}: the shortest level lasts {shortest:g} s, so no request would "
                            "be measured; give a warm-up shorter than every level (default: 20 % of each)")
    if warmup < 0:
        warmup = 0.2 * plan.shortest() if plan is not None and plan.shortest() else 0.0
        if plan is not None and plan.level_durations_s:
            warmups = [0.2 * d for d in plan.level_durations_s]
    if opts.priority not in PRIORITIES:
        raise SettingsError(f"bad --priority {opts.priority!r}: choose one of {', '.join(PRIORITIES)}")
    if opts.timing not in TIMINGS:
        raise SettingsError(f"bad --timing {opts.timing!r}: choose one of {', '.join(TIMINGS)}")
    if opts.arrival not in ARRIVAL_KINDS:
        raise SettingsError(f"bad --arrival {opts.arrival!r}: choose one of {', '.join(ARRIVAL_KINDS)}")
    route = Route(host=host or "", endpoint=opts.endpoint, dialect_given=bool(opts.dialect),
                  server_metrics=opts.server_metrics)
    model = opts.model or preset.model
    target, endpoint, server_metrics = route.resolve(preset, dialect, model)
    if opts.timing == "capture":
        if target.scheme == "https":
            raise SettingsError("--timing capture reads plain HTTP (an https stream is encrypted on the wire): "
                                "use --timing read")
        try:  # the embedded simulated engine (no --host) listens on 127.0.0.1
            capture.check(target.host if host else "127.0.0.1", target.port if host else 0)
        except capture.CaptureError as e:
            raise SettingsError(str(e)) from None
    request = RequestOptions(
        model=model,
        max_tokens=opts.max_tokens,
        temperature=opts.temperature if opts.temperature >= 0 else None,
        ignore_eos=opts.ignore_eos,
        include_usage=not getattr(opts, "no_stream_usage", False),
        stream=not getattr(opts, "no_stream", False),
        batch_size=getattr(opts, "batch_size", 1) or 1,
        extra_body=extra,
        max_tokens_field=max_tokens_field(opts, preset, dialect),
    )
    return Settings(
        preset=preset,
        target=target,
        dialect=dialect,
        endpoint=endpoint,
        request=request,
        route=route,
        headers=headers,
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        accept_encoding=opts.accept_encoding.strip() or "identity",
        backoff=not opts.no_backoff,
        max_backoff_s=opts.max_backoff,
        input_len=opts.input_len,
        seed=seed,
        seed_drawn=seed_drawn,
        requests=opts.requests,
        duration_s=duration_s,
        out=opts.out,
        run_name=opts.run_name,
        max_fail_ratio=opts.max_fail_ratio,
        model_from_server=not model,
        plan=plan,
        warmup_s=warmup,
        warmups_s=warmups,
        arrival=opts.arrival,
        burstiness=opts.burstiness,
        slo=parse_slo(opts.slo),
        slo_attainment=opts.slo_attainment,
        knee_pct=opts.knee_pct,
        server_metrics=server_metrics,
        server_metrics_interval=opts.server_metrics_interval,
        gpu_metrics=_gpu_metrics_url(opts.gpu_metrics),
        metrics_port=opts.metrics_port,
        metrics_bind=opts.metrics_bind.strip() or "127.0.0.1",
        progress_interval=opts.progress_interval,
        priority=opts.priority,
        timing=opts.timing,
        dataset=spec,
        tokenizer=opts.tokenizer,
        prefix_len=opts.prefix_len,
        num_prefixes=opts.num_prefixes,
        turns=opts.turns,
        turn_input_len=opts.turn_input_len,
        think_time=opts.think_time,
        trace=opts.trace,
        trace_speed=opts.trace_speed,
        max_concurrency=opts.max_concurrency,
        warmup_given=opts.warmup >= 0,
        cancel_rate=opts.cancel_rate,
        stagger=not opts.no_stagger,
        capacity=opts.capacity,
        max_probes=opts.max_probes,
        resolution_pct=opts.resolution,
        precision_pct=opts.precision,
        min_lifetimes=getattr(opts, "min_lifetimes", 0.0) or 0.0,
        max_level_duration_s=_max_level_duration(opts, plan),
        preflight=not opts.no_preflight,
        media=media,
    )


def _media(opts: Any, dialect: Dialect) -> MediaSpec:
    """The media spec of ``--images`` and ``--audio-seconds``; SettingsError for values that cannot be made or
    media the dialect's API takes no part for."""
    w, h = parse_size(getattr(opts, "image_size", "512x512") or "512x512")
    spec = MediaSpec(images=getattr(opts, "images", 0) or 0, image_width=w, image_height=h,
                     image_format=str(getattr(opts, "image_format", "png") or "png").lower(),
                     audio_s=getattr(opts, "audio_seconds", 0.0) or 0.0, audio_rate=getattr(opts, "audio_rate", 16000),
                     image_urls=[str(u).strip() for u in getattr(opts, "image_url", None) or []])
    check_media(spec)
    check_dialect_media(spec, dialect)
    return spec


def check_dialect_media(spec: MediaSpec, dialect: Dialect) -> None:
    """SettingsError when ``spec`` asks for media the dialect's API takes no part for."""
    for kind, flag, on in (("image", "--images", spec.images or len(spec.image_urls)),
                           ("audio", "--audio-seconds", spec.audio_s)):
        if on and kind not in dialect.media_kinds:
            takes = [n for n, d in DIALECTS.items() if kind in d.media_kinds]
            raise SettingsError(f"bad {flag} {on:g}: the {dialect.name} dialect sends no {kind} parts "
                                f"({kind}s: {', '.join(takes)})")


@dataclass(frozen=True)
class Route:
    """Where requests go, as the user gave it: ``--host`` ("" : the preset's base URL), ``--endpoint`` ("" :
    the preset's path, or the dialect's when ``--dialect`` was given) and ``--server-metrics`` ("" : the
    preset's metrics path on the host; "none": off). Kept in the settings so that the parts derived from it
    can be derived again for another host (the embedded engine's port, known once it listens) or another
    dialect (a locustfile's user class)."""

    host: str = ""
    endpoint: str = ""
    dialect_given: bool = False
    server_metrics: str = ""

    def resolve(self, preset: Preset, dialect: Dialect, model: str) -> tuple[Target, str, str]:
        """(target, endpoint path, metrics URL or "") for ``preset``, ``dialect`` and ``model``. SettingsError
        for a bad URL or path."""
        try:
            target = Target.parse(self.host or preset.base_url)
        except BadURL as e:
            raise SettingsError(f"bad --host {e}") from None
        endpoint = self.endpoint or (dialect.path if self.dialect_given else preset.path)
        if not endpoint.startswith("/"):
            raise SettingsError(f"bad --endpoint {endpoint!r}: a path starts with '/'")
        target, endpoint = join_paths(target, endpoint)
        server_metrics = self.server_metrics
        if server_metrics.lower() == "none":
            server_metrics = ""
        elif not server_metrics and preset.metrics_path:
            server_metrics = metrics_url(target.url(""), preset.metrics_path)
        if server_metrics:
            try:
                Target.parse(server_metrics)
            except BadURL as e:
                raise SettingsError(f"bad --server-metrics {e}") from None
        if "{model}" in endpoint:
            if not model:
                raise SettingsError(f"--endpoint {endpoint!r} needs the model name: pass --model")
            endpoint = endpoint.replace("{model}", model)
        return target, endpoint, server_metrics


def _scrape_url(url: str) -> str:
    """The URL a scrape of ``url`` fetches: no userinfo, no query (what run.json records)."""
    t = Target.parse(url)
    return t._replace(base_path="").url(t.base_path or "/metrics")


def _gpu_metrics_url(url: str) -> str:
    """``--gpu-metrics``: a DCGM exporter's metrics URL (``/metrics`` when it names no path), or "" for none.
    SettingsError for a bad URL."""
    if not url or url.lower() == "none":
        return ""
    try:
        Target.parse(url)
    except BadURL as e:
        raise SettingsError(f"bad --gpu-metrics {e}") from None
    return url


def with_host(settings: Settings, host: str) -> Settings:
    """``settings`` aimed at the base URL ``host`` (the embedded simulated engine, once it listens): target,
    endpoint and the engine-metrics URL derived again. SettingsError for a bad URL."""
    route = replace(settings.route, host=host)
    target, endpoint, server_metrics = route.resolve(settings.preset, settings.dialect, settings.request.model)
    return replace(settings, route=route, target=target, endpoint=endpoint, server_metrics=server_metrics)


def with_dialect(settings: Settings, name: str) -> Settings:
    """``settings`` with the dialect ``name`` (a locustfile's user class declares one) when neither
    ``--dialect`` nor ``--endpoint`` chose one; its path becomes the endpoint. Otherwise unchanged."""
    if not name or settings.route.dialect_given or settings.route.endpoint or name == settings.dialect.name:
        return settings
    try:
        dialect = get_dialect(name)
    except UnknownDialect as e:
        raise SettingsError(str(e)) from None
    route = replace(settings.route, dialect_given=True)
    target, endpoint, server_metrics = route.resolve(settings.preset, dialect, settings.request.model)
    return replace(settings, dialect=dialect, route=route, target=target, endpoint=endpoint,
                   server_metrics=server_metrics, headers=_rekey(settings.headers, settings.dialect, dialect))


def _rekey(headers: dict[str, str], old: Dialect, new: Dialect) -> dict[str, str]:
    """``headers`` of ``old``'s requests made ``new``'s: the API key moved to ``new``'s auth header, ``old``'s
    fixed headers dropped, ``new``'s added."""
    value = headers.get(old.auth_header, "")
    key = old.key_of(value) if value else ""
    out = {k: v for k, v in headers.items() if k not in old.fixed_headers and not (key and k == old.auth_header)}
    return dialect_headers(out, new, key)


def check_options(opts: Any) -> None:
    """Every option's declared constraint (:attr:`tokenswarm.options.Opt.check`): SettingsError naming the first
    option whose value is not allowed, e.g. ``bad --max-tokens 0: must be at least 1``."""
    check_ranges(opts, {opt.flag: opt.check for opt in OPTIONS if opt.check is not None})


def check_ranges(values: Any, checks: dict[str, Any]) -> None:
    """``checks``: flag -> constraint (value -> None | what is wrong). SettingsError naming the first flag whose
    value in ``values`` (a namespace; None values are not checked) is not allowed."""
    for flag, check in checks.items():
        value = getattr(values, flag.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        why = check(value)
        if why:
            raise SettingsError(f"bad {flag} {value}: {why}")


def join_paths(target: Target, endpoint: str) -> tuple[Target, str]:
    """Where a base URL's path and the endpoint meet, as users write them (OpenAI clients take a base URL
    ending in ``/v1``; some paste the whole request URL):

    * ``--host http://h:8000/v1/chat/completions`` (the endpoint's own path at the end of the host): the base is
      ``http://h:8000``, not a prefix that would double the path;
    * ``--host http://h:8000/v1`` with an endpoint ``/v1/chat/completions``: one ``/v1``, not two.
    """
    base = target.base_path
    if not base:
        return target, endpoint
    for tail in (endpoint, endpoint[3:] if endpoint.startswith("/v1/") else None):
        if tail and base.endswith(tail):
            return target._replace(base_path=base[: -len(tail)]), endpoint if tail == endpoint else tail
    if base.endswith("/v1") and endpoint.startswith("/v1/"):
        return target, endpoint[3:]
    return target, endpoint


SEED_MAX = 2**31 - 1


def parse_seed(opts: Any) -> tuple[int, bool]:
    """(seed, drawn): ``--seed N`` as given; else (0, True) until :func:`with_fresh_seed` draws one for the run.
    SettingsError for a seed that is not a whole number."""
    raw = getattr(opts, "seed", "")
    text = str(raw).strip() if raw is not None else ""
    if text:
        try:
            return int(text), False
        except ValueError:
            raise SettingsError(f"bad --seed {raw!r}: give a whole number, or leave it out for a fresh seed "
                                "per run") from None
    return 0, True


def with_fresh_seed(settings: Settings) -> Settings:
    """The settings of a run about to start: without ``--seed``, a fresh seed (every run, so a repeated run
    sends new prompts). Workers receive it with the rest of the settings (:func:`to_wire`)."""
    if not settings.seed_drawn:
        return settings
    seed = secrets.randbelow(SEED_MAX) + 1
    return replace(settings, seed=seed, dataset=replace(settings.dataset, seed=seed))


def with_trace(settings: Settings) -> Settings:
    """A trace replay's settings with its plan: one open-loop level at the trace's mean rate, lasting the
    (scaled) trace plus 2 s, and ``trace_requests``. Reads the trace file (:func:`tokenswarm.workloads.load_trace`),
    which is why :func:`build` does not; SettingsError for a bad file. Settings without a trace come back as
    they are."""
    if not settings.trace:
        return settings
    from tokenswarm.workloads import load_trace

    entries = load_trace(settings.trace, settings.trace_speed)
    span = entries[-1].offset_s
    plan = SweepPlan(RATE, [round(len(entries) / max(span, 1.0), 3)], span + 2.0, 0, settings.max_concurrency)
    warmup = settings.warmup_s if settings.warmup_given else 0.2 * (plan.shortest() or 0.0)
    return replace(settings, plan=plan, trace_requests=len(entries), warmup_s=warmup)


def _max_level_duration(opts: Any, plan: SweepPlan | None) -> float | None:
    """--max-level-duration in seconds; with --precision, --min-lifetimes or a capacity search and none given: 10
    times the longest level duration, at least 120 s (a probe whose intervals never decide must still end).
    SettingsError for a bad span, or one shorter than --level-duration."""
    raw = str(getattr(opts, "max_level_duration", "") or "").strip()
    if not raw and not getattr(opts, "precision", 0) and not getattr(opts, "min_lifetimes", 0) \
            and not getattr(opts, "capacity", False):
        return None
    longest = max(plan.level_durations_s or [plan.level_duration_s or 0.0]) if plan is not None else 0.0
    if not raw:
        return max(10.0 * longest, 120.0)
    span = parse_duration(raw, "--max-level-duration")
    if span < longest:
        raise SettingsError(f"bad --max-level-duration {raw!r}: shorter than --level-duration ({longest:g} s)")
    return span


def _check_workload(opts: Any) -> None:
    """The workload options: ranges, and which combine."""
    kinds = [name for name, on in (("--trace", opts.trace), ("--turns", opts.turns), ("--prefix-len", opts.prefix_len))
             if on]
    if len(kinds) > 1:
        raise SettingsError(f"{' and '.join(kinds)} are different workloads: choose one")
    if opts.turns and (opts.dataset or "random") not in ("random", "sharegpt"):
        raise SettingsError("--turns makes synthetic conversations (--dataset random) or replays ShareGPT's "
                            f"human turns (--dataset sharegpt), not --dataset {opts.dataset}")
    if opts.trace and (opts.dataset or "random") != "random":
        raise SettingsError("--trace builds prompts of the trace's lengths: leave out --dataset")


def _plan(opts: Any, duration_s: float | None) -> SweepPlan | None:
    """The sweep plan of --levels/--rates, or None for a single level."""
    if opts.levels and opts.rates:
        raise SettingsError("give --levels (concurrency) or --rates (request rate), not both")
    if not opts.levels and not opts.rates:
        for name in ("level_duration", "level_requests"):
            if getattr(opts, name) and str(getattr(opts, name)).strip() != "0":
                raise SettingsError(f"--{name.replace('_', '-')} needs --levels or --rates")
        return None
    if opts.requests:
        raise SettingsError("--requests is for a single level; in a sweep use --level-requests")
    spans = [parse_duration(t, "--level-duration") for t in str(opts.level_duration).split(",")] \
        if opts.level_duration else []
    if duration_s is not None:
        raise SettingsError("--duration is for a single level; in a sweep use --level-duration")
    counts = parse_counts(opts.level_requests, "--level-requests")
    mode = CONCURRENCY if opts.levels else RATE
    levels = parse_levels(opts.levels, "--levels") if opts.levels else parse_levels(opts.rates, "--rates", False)
    if getattr(opts, "capacity", False):
        return _capacity_plan(opts, mode, levels, spans, counts)
    each = counts if len(counts) > 1 else None  # one per level
    one = counts[0] if len(counts) == 1 else 0
    if len(spans) > 1:  # one per level
        return SweepPlan(mode, levels, None, one, opts.max_concurrency, spans, each)
    return SweepPlan(mode, levels, spans[0] if spans else None, one, opts.max_concurrency, None, each)


#: the SLO keys a capacity search judges live (the live figures: TTFT, TPOT, E2E)
CAPACITY_SLO = ("ttft", "tpot", "e2e")


def _capacity_plan(opts: Any, mode: str, levels: list[float], spans: list[float], counts: list[int]) -> SweepPlan:
    """A capacity search's plan: the bracket (LOW,HIGH; one level: from it up to 1024 users or 64 times the
    rate), one duration and/or request count for every probe. SettingsError naming what does not fit."""
    flag = "--levels" if mode == CONCURRENCY else "--rates"
    if len(levels) > 2:
        raise SettingsError(f"bad {flag}: a capacity search takes its bracket, LOW,HIGH (e.g. {flag} 1,256), not "
                            f"{len(levels)} levels")
    low = levels[0]
    high = levels[-1] if len(levels) == 2 else max(low, 1024.0 if mode == CONCURRENCY else 64.0 * low)
    if high < low:
        raise SettingsError(f"bad {flag}: the bracket's high end {high:g} is below its low end {low:g}")
    if len(spans) > 1 or len(counts) > 1:
        raise SettingsError("a capacity search takes one --level-duration / --level-requests for every probe")
    slo = parse_slo(opts.slo)
    if not slo:
        raise SettingsError("a capacity search needs the SLO to hold: --slo ttft_p99=500,tpot_p99=50 (a level's "
                            "percentiles) and/or ttft=500 (every request, --slo-attainment of them)")
    for key in slo:
        metric, _, stat = key.partition("_")
        if metric not in CAPACITY_SLO or stat not in ("", "mean", "p50", "p90", "p99"):
            raise SettingsError(f"bad --slo {key}: a capacity search judges TTFT, TPOT and E2E (per request, or "
                                "their mean, p50, p90, p99)")
    return SweepPlan(mode, [low, high], spans[0] if spans else None, counts[0] if counts else 0,
                     opts.max_concurrency, capacity=True)


def parse_counts(text: Any, option: str) -> list[int]:
    """``"50"`` -> [50], ``"50,50,200"`` -> [50, 50, 200], ``""`` or ``0`` -> []: whole numbers, 0 or more;
    a bad item is a SettingsError naming the option and the item."""
    raw = str(text if text is not None else "").strip()
    if raw in ("", "0"):
        return []
    out = []
    for item in raw.split(","):
        try:
            n = int(item.strip())
        except ValueError:
            raise SettingsError(f"bad {option} {raw!r}: {item.strip()!r} is not a whole number") from None
        if n < 0:
            raise SettingsError(f"bad {option} {raw!r}: {item.strip()!r} must be 0 or more")
        out.append(n)
    return out


_SPAN_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str, option: str = "--duration") -> float:
    """Seconds in ``30``, ``30s``, ``2m``, ``1h30m``; a SettingsError names the option otherwise."""
    raw = str(text).strip().lower()
    m = _SPAN_RE.match(raw)
    if not raw or not m or not any(m.groups()):
        raise SettingsError(f"bad {option} {text!r}: use seconds or a span like 30s, 2m, 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise SettingsError(f"bad {option} {text!r}: must be more than zero")
    return seconds


# -- the settings on the wire --------------------------------------------------------------------
#: the version of :func:`to_wire`'s layout; a process that reads another refuses it in one line
WIRE_VERSION = 1
#: the environment variable in which ``tokenswarm run|sweep`` hands its Locust process the run's settings (JSON)
WIRE_ENV = "TOKENSWARM_RUN_SETTINGS"
#: set by `tokenswarm run|sweep --master`: the Locust process says it waits for its workers once it can be stopped
MASTER_WAITING_ENV = "TOKENSWARM_SAY_MASTER_WAITING"


def to_wire(settings: Settings) -> dict[str, Any]:
    """The settings as plain JSON/msgpack data, ``{"version", "tokenswarm", "settings"}``: what the command
    line hands its Locust process and a master sends each worker (:mod:`tokenswarm.loadgen.messages`), so the
    settings of a run are built once. Secrets travel too (the receiver sends them); the layout follows the
    dataclasses' fields, so a new field travels without more code. :func:`from_wire` reverses it."""
    return {"version": WIRE_VERSION, "tokenswarm": __version__, "settings": _encode(settings)}


def from_wire(data: Any) -> Settings:
    """Settings from :func:`to_wire`'s data. SettingsError when the layout is of another version (a worker of
    another tokenswarm than its master's) or does not fit the fields."""
    if not isinstance(data, dict) or "settings" not in data:
        raise SettingsError("the settings received are not tokenswarm settings")
    if data.get("version") != WIRE_VERSION:
        raise SettingsError(f"the settings received are of layout {data.get('version')!r} (tokenswarm "
                            f"{data.get('tokenswarm')}); this process reads layout {WIRE_VERSION} (tokenswarm "
                            f"{__version__}): run one version on every process")
    try:
        return _decode(Settings, data["settings"])
    except (TypeError, ValueError, KeyError) as e:
        raise SettingsError(f"the settings received do not fit tokenswarm {__version__}'s: {e}") from None


def _encode(value: Any) -> Any:
    if isinstance(value, Dialect):
        return {"name": value.name, "config": value.config()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any) -> Any:
    """``value`` (as :func:`_encode` wrote it) as type ``tp`` (a field's resolved annotation)."""
    if value is None:
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return _decode(args[0], value) if len(args) == 1 else value
    if tp is Dialect:
        return get_dialect(value["name"], **value.get("config", {}))
    if tp is Target:
        return Target(*value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        extra = set(value) - known
        if extra:
            raise ValueError(f"unknown field(s) {', '.join(sorted(extra))} in {tp.__name__}")
        return tp(**{k: _decode(hints[k], v) for k, v in value.items()})
    if typing.get_origin(tp) is list and args:
        return [_decode(args[0], v) for v in value]
    return value
