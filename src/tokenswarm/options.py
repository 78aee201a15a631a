"""Run options, declared once: the same table feeds ``tokenswarm run|sweep`` and Locust's parser.

Each :class:`Opt` becomes ``--flag`` on the ``tokenswarm`` command line and on
``locust -f locustfiles/chat.py`` (through Locust's ``init_command_line_parser``
event, so it reads ``TOKENSWARM_*`` variables, ``.conf`` files, compose and
Kubernetes environments). ``tokenswarm run`` hands them to its Locust child
as that command line (:func:`to_argv`), secrets as variables (:func:`to_env`).
Those with a ``web_ui`` text are also on the web UI's start form, labelled
with it (:mod:`tokenswarm.loadgen.webui`). Values are plain strings, numbers and booleans so the form can edit them;
:func:`tokenswarm.settings.build` validates them into one typed object.
No locust import here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "TOKENSWARM_"


@dataclass(frozen=True)
class Range:
    """A number option's allowed values: ``lo``..``hi`` (either None: unbounded), each end included unless
    ``lo_open``/``hi_open``; ``words`` is what an error says, e.g. "must be at least 1"."""

    words: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else :attr:`words`."""
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return self.words
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return self.words
        return None


AT_LEAST_1 = Range("must be at least 1", lo=1)
ZERO_OR_MORE = Range("must be 0 or more", lo=0)
POSITIVE = Range("must be positive", lo=0, lo_open=True)
ABOVE_ZERO = Range("must be more than zero", lo=0, lo_open=True)


@dataclass(frozen=True)
class Opt:
    """One option: ``--flag`` with its type, default, help and ``TOKENSWARM_*`` variable."""

    flag: str
    type: Callable[[str], Any] | None
    default: Any
    help: str
    secret: bool = False  # redacted everywhere it is written
    #: the web UI form's text for it, its unit included; "" keeps it off the form (flags, TOKENSWARM_* variables
    #: and config files still set it). The form lists these in the order of OPTIONS.
    web_ui: str = ""
    web_for: str = ""  # on the form only for "level" (one-level locustfiles) or "sweep" (the sweep shape) tests
    web_choices: Callable[[], tuple[str, ...]] | None = None  # the form offers these values in a drop-down
    action: str | None = None  # "store_true" / "append"
    metavar: str | None = None
    group: str = "target"
    #: the values allowed (a :class:`Range`, or any callable value -> None | what is wrong), checked by
    #: :func:`tokenswarm.settings.build` with one line naming the flag and the value
    check: Callable[[Any], str | None] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


# the web UI form's drop-downs (imported when the form is built)
def _engines() -> tuple[str, ...]:
    from tokenswarm.presets import PRESETS

    return tuple(PRESETS)


def _datasets() -> tuple[str, ...]:
    from tokenswarm.datasets.base import DATASETS

    return DATASETS


OPTIONS: tuple[Opt, ...] = (
    # -- the target ------------------------------------------------------------------
    Opt("--engine", str, "sim", "engine preset: sim, vllm, sglang, ... (`tokenswarm engines` lists them)",
        metavar="NAME", web_ui="engine preset: the request path and API dialect", web_choices=_engines),
    Opt("--model", str, "", "model name sent in requests (default: the preset's, else the server's first model)",
        web_ui="model name sent in requests; empty: the preset's, else the server's first model"),
    Opt("--endpoint", str, "", "request path, overriding the preset's (e.g. /v1/completions)", metavar="PATH"),
    Opt("--dialect", str, "", "API dialect, overriding the preset's: openai-chat, openai-completions, "
        "openai-responses, anthropic-messages, ... (`tokenswarm engines` lists them); its path becomes the "
        "endpoint", metavar="NAME"),
    Opt("--body-template", str, "", "template dialect: the JSON request body with \"{prompt}\", {max_tokens} "
        "and \"{model}\" placeholders", metavar="JSON"),
    Opt("--text-path", str, "", "template dialect: where each stream event holds its text (e.g. outputs.0.text)",
        metavar="PATH"),
    Opt("--text-mode", str, "auto", "template dialect: each event's text is a delta, cumulative, or auto"),
    Opt("--api-key", str, "", "API key sent as 'Authorization: Bearer ...' (anthropic-messages: 'x-api-key') "
        "(default: $TOKENSWARM_API_KEY, then $ANTHROPIC_API_KEY for anthropic-messages, then $OPENAI_API_KEY); "
        "never written anywhere nor shown in the web UI", secret=True, metavar="KEY"),
    Opt("--header", str, None, "extra request header 'Name: value' (repeatable; values are never written)",
        action="append", metavar="'K: V'"),
    Opt("--no-preflight", None, False, "skip the check of the target before load starts", action="store_true"),
    Opt("--connect-timeout", float, 10.0, "seconds to wait for a connection", metavar="S", check=POSITIVE),
    Opt("--read-timeout", float, 120.0, "seconds to wait for the next bytes of a response", metavar="S",
        check=POSITIVE),
    Opt("--accept-encoding", str, "identity", "the Accept-Encoding every request sends: identity (no "
        "compression, the default: a compressed stream's events are timed when a whole block decodes), or e.g. "
        "gzip to test a gateway's compressed path (gzip and deflate are decoded as they arrive)", metavar="CODING"),
    Opt("--no-backoff", None, False, "on HTTP 429/503, send the next request at once instead of waiting what "
        "Retry-After says (or backing off); a run of failures still backs off, so no user spins",
        action="store_true"),
    Opt("--max-backoff", float, 60.0, "longest wait, in seconds, after a 429/503 (Retry-After included) or a run "
        "of failures", metavar="S", check=Range("must be 0 or more seconds", lo=0)),
    # -- the workload ----------------------------------------------------------------
    Opt("--max-tokens", int, 128, "output tokens to ask for per request", metavar="N", group="workload",
        web_ui="output length asked for per request, in tokens", check=AT_LEAST_1),
    Opt("--dataset", str, "random", "prompts: random, sharegpt, openqa, longalpaca, jsonl, csv", metavar="NAME",
        group="workload", web_ui="where the prompts come from", web_choices=_datasets),
    Opt("--dataset-path", str, "", "the dataset file (sharegpt, openqa, longalpaca, jsonl, csv)", metavar="FILE",
        group="workload", web_ui="the dataset's file, a path on every load-generating machine; not for random"),
    Opt("--input-len", int, 128, "prompt length in tokens for the random dataset", metavar="N", group="workload",
        web_ui="prompt length of the random dataset, in tokens", check=AT_LEAST_1),
    Opt("--output-len", int, 0, "output tokens per request for the random dataset (0: --max-tokens); with "
        "file datasets, 0 keeps --max-tokens and -1 uses each sample's reference answer length",
        metavar="N", group="workload"),
    Opt("--range-ratio", float, 0.0, "random dataset: lengths drawn uniformly within +-ratio of "
        "--input-len/--output-len, as vLLM's random dataset", metavar="R", group="workload"),
    Opt("--prompt-field", str, "", "jsonl/csv: the field holding the prompt (default: prompt)", metavar="NAME",
        group="workload"),
    Opt("--min-prompt-tokens", int, 0, "drop dataset prompts shorter than this", metavar="N", group="workload"),
    Opt("--max-prompt-tokens", int, 0, "drop dataset prompts longer than this (0: no limit)", metavar="N",
        group="workload"),
    Opt("--tokenizer", str, "", "a Hugging Face tokenizer.json (or a folder holding one): exact random prompt "
        "lengths, and output tokens counted locally when the server sends no usage; never downloaded",
        metavar="PATH", group="workload"),
    Opt("--temperature", float, -1.0, "sampling temperature (negative: leave to the server)", metavar="T",
        group="workload"),
    Opt("--ignore-eos", None, False, "ask the server to ignore EOS so outputs have exactly --max-tokens "
        "(vLLM, SGLang)", action="store_true", group="workload"),
    Opt("--extra-body", str, "", "JSON object merged into every request body; a key set to null is removed "
        "(e.g. {\"stream_options\": null})", metavar="JSON", group="workload"),
    Opt("--max-tokens-field", str, "", "the body field that caps the output (default: the preset's, else the "
        "dialect's: max_tokens; openai preset: max_completion_tokens; openai-responses: max_output_tokens)",
        metavar="NAME", group="workload"),
    Opt("--no-stream", None, False, "ask for whole answers (stream: false): each request is measured as E2E "
        "only (TTFT, TPOT and ITL are not figures of it); chat, completions, responses, messages",
        action="store_true", group="workload"),
    Opt("--batch-size", int, 1, "inputs per request of a batched API: openai-embeddings' inputs, rerank's "
        "documents", metavar="N", group="workload", check=AT_LEAST_1),
    Opt("--images", int, 0, "synthetic images per request, sent as data URLs in the last user message "
        "(openai-chat, openai-responses, anthropic-messages)", metavar="N", group="workload", check=ZERO_OR_MORE),
    Opt("--image-size", str, "512x512", "--images: width x height in pixels", metavar="WxH", group="workload"),
    Opt("--image-format", str, "png", "--images: png or jpeg", metavar="FMT", group="workload"),
    Opt("--image-url", str, None, "an image every request names by URL, for the server to fetch (repeatable)",
        action="append", metavar="URL", group="workload"),
    Opt("--audio-seconds", float, 0.0, "a synthetic audio clip of this many seconds per request (16-bit mono WAV, "
        "openai-chat's input_audio)", metavar="S", group="workload", check=ZERO_OR_MORE),
    Opt("--audio-rate", int, 16000, "--audio-seconds: the sample rate in Hz", metavar="HZ", group="workload",
        check=AT_LEAST_1),
    Opt("--no-stream-usage", None, False, "leave stream_options out of OpenAI requests (for servers that reject "
        "it); output tokens are then counted with --tokenizer, else one per output event (token_source says "
        "which)", action="store_true", group="workload"),
    Opt("--seed", str, "", "seed for the prompts (shifted per worker); default: a fresh one drawn for every run "
        "and recorded in run.json, so a repeated run is not served from the engine's prefix cache; give the "
        "recorded one to send the same prompts again", metavar="N", group="workload"),
    Opt("--prefix-len", int, 0, "shared-prefix workload: every prompt starts with one of --num-prefixes shared "
        "prefixes of this many tokens (a system prompt in chat)", metavar="N", group="workload", check=ZERO_OR_MORE),
    Opt("--num-prefixes", int, 1, "how many different shared prefixes (with --prefix-len)", metavar="K",
        group="workload", check=Range("must be 1 or more", lo=1)),
    Opt("--turns", int, 0, "multi-turn workload: each user holds conversations of this many turns, each turn "
        "sending the whole history (0: single requests)", metavar="T", group="workload", check=ZERO_OR_MORE),
    Opt("--turn-input-len", int, 64, "multi-turn: tokens of each synthetic user turn", metavar="N",
        group="workload", check=Range("must be 1 or more", lo=1)),
    Opt("--think-time", float, 0.0, "multi-turn: seconds a user waits between turns", metavar="S",
        group="workload", check=ZERO_OR_MORE),
    Opt("--trace", str, "", "replay the arrivals of a trace (JSONL: plain or Mooncake layout; BurstGPT CSV) "
        "open-loop, with its input and output lengths", metavar="FILE", group="workload"),
    Opt("--trace-speed", float, 1.0, "trace replay speed: 2 sends twice as fast", metavar="X", group="workload",
        check=ABOVE_ZERO),
    Opt("--cancel-rate", float, 0.0, "share of requests the client abandons after a random number of tokens "
        "(recorded as cancelled, not failed), as users closing a chat tab", metavar="R", group="workload",
        check=Range("must be at least 0 and below 1", lo=0, hi=1, hi_open=True)),
    Opt("--duration", str, "", "how long to send load (30s, 5m, 1h); then no new requests, those in flight "
        "finish, and the test stops", metavar="SPAN", group="workload",
        web_ui="how long to send load, e.g. 30s, 5m, 1h; empty: until Stop", web_for="level"),
    Opt("--requests", int, 0, "stop after this many requests in all (0: no limit; use with or instead of a "
        "duration)", metavar="N", group="workload",
        web_ui="stop after this many requests in all; 0: no limit", web_for="level",
        check=Range("must be 0 (no limit) or more", lo=0)),
    # -- sweeps -----------------------------------------------------------------------
    Opt("--levels", str, "", "concurrency levels to step through, e.g. 1,2,4,...,1024 (a sweep)", metavar="LIST",
        group="sweep", web_ui="concurrency levels to step through, in users, e.g. 1,2,4,8 (the user count "
        "above is not used)", web_for="sweep"),
    Opt("--rates", str, "", "request rates (req/s) to step through in open-loop mode, e.g. 1,2,4", metavar="LIST",
        group="sweep", web_ui="or request rates to step through, in req/s, e.g. 1,2,4 (leave levels empty)",
        web_for="sweep"),
    Opt("--level-duration", str, "", "how long each level lasts (30s, 2m), or one span per level (30s,30s,2m): "
        "a level should last several times its requests' latency", metavar="SPAN", group="sweep",
        web_ui="how long each level lasts, e.g. 30s, 2m: several times a request's latency", web_for="sweep"),
    Opt("--level-requests", str, "", "end each level once this many of its requests finished, or one count "
        "per level (50,50,200; 0: that level ends by --level-duration); the requests in flight then finish in "
        "it too (up to its users more; with workers, also what they send while their records travel, up to a "
        "second)", metavar="N", group="sweep",
        web_ui="or end each level after this many of its requests finished; 0: by time", web_for="sweep"),
    Opt("--warmup", float, -1.0, "seconds trimmed from the start of each level's measurement window (negative: "
        "20%% of --level-duration in sweeps, none otherwise)", metavar="S", group="sweep"),
    Opt("--precision", float, 0.0, "run each level until the 95%% confidence interval of the figures that matter "
        "(the --slo's, else output throughput and TTFT p99) is within this percentage of the figure (half-width); "
        "--level-duration is then the shortest a level runs (0: off)", metavar="PCT", group="sweep",
        web_ui="run each level until its figures' 95% interval is within this % (0: off)", web_for="sweep",
        check=Range("must be 0 (off) or more", lo=0)),
    Opt("--min-lifetimes", float, 0.0, "run each level until its measurement window holds this many mean request "
        "lifetimes (E2E; the report flags a level under 3 as short, its throughput still carrying the ramp); "
        "--level-duration is then the shortest a level runs (0: off)", metavar="N", group="sweep",
        web_ui="run each level until its window holds this many request lifetimes (3: the report's steady; 0: off)",
        web_for="sweep", check=Range("must be 0 (off) or more", lo=0)),
    Opt("--max-level-duration", str, "", "with --precision, --min-lifetimes or a capacity search: the longest a "
        "level runs (default: 10 times --level-duration, at least 2m); a level that ends here first is flagged",
        metavar="SPAN", group="sweep"),
    Opt("--capacity", None, False, "search the highest level whose --slo holds instead of stepping every level: "
        "--levels LOW,HIGH (users) or --rates LOW,HIGH (req/s) is the bracket to start from; each probe runs "
        "until its intervals decide (tokenswarm capacity)", action="store_true", group="sweep",
        web_ui="search the highest level whose SLOs hold (levels or rates: LOW,HIGH)", web_for="sweep"),
    Opt("--max-probes", int, 20, "capacity search: the most levels it probes before it answers undecided",
        metavar="N", group="sweep", check=AT_LEAST_1),
    Opt("--resolution", float, 5.0, "capacity search: stop bisecting once the bracket is within this percentage "
        "of its low end (and one user)", metavar="PCT", group="sweep", check=ABOVE_ZERO),
    Opt("--no-stagger", None, False, "closed loop: a level's new users send their first request at once (the "
        "waves of vLLM's bench) instead of spread over one request lifetime", action="store_true", group="sweep"),
    Opt("--arrival", str, "poisson", "rate mode arrivals: poisson, gamma (with --burstiness) or constant",
        group="sweep"),
    Opt("--burstiness", float, 1.0, "gamma arrivals' shape: <1 burstier than Poisson, >1 more regular",
        metavar="B", group="sweep", check=ABOVE_ZERO),
    Opt("--max-concurrency", int, 256, "rate mode: most requests in flight at once (users spawned)", metavar="N",
        group="sweep", check=AT_LEAST_1),
    Opt("--slo", str, "", "service-level objectives in ms: per request (ttft=2000,tpot=100,e2e=30000: every "
        "request must meet them, --slo-attainment of them) and/or on a level's percentiles or means "
        "(ttft_p99=500,tpot_p90=50,e2e_mean=8000)", metavar="K=MS,...", group="sweep",
        web_ui="service-level objectives in ms, e.g. ttft=2000,tpot=100 (per request) or ttft_p99=500 (a "
        "level's percentile); empty: none"),
    Opt("--slo-attainment", float, 0.99, "share of a level's requests that must meet every SLO for the level "
        "to meet them", metavar="R", group="sweep", check=Range("must be in (0, 1]", lo=0, hi=1, lo_open=True)),
    Opt("--knee-pct", float, 10.0, "saturation: the level after which output throughput grows by less than "
        "this percentage while TTFT p99 still rises", metavar="P", group="sweep", check=ZERO_OR_MORE),
    # -- observing -------------------------------------------------------------------
    Opt("--server-metrics", str, "", "the engine's Prometheus metrics URL, sampled into server_metrics.csv "
        "(default: the preset's metrics path on --host; 'none' to skip)", metavar="URL", group="observe"),
    Opt("--server-metrics-interval", float, 2.0, "seconds between samples of the engine's metrics", metavar="S",
        group="observe", check=POSITIVE),
    Opt("--gpu-metrics", str, "", "a DCGM exporter's Prometheus metrics URL (dcgm-exporter, or tokenswarm "
        "gpu-exporter on the engine's host), sampled into gpu_metrics.csv: power, energy per output token, GPU "
        "utilisation and memory per level", metavar="URL", group="observe"),
    Opt("--metrics-port", int, 0, "headless runs: serve tokenswarm's own Prometheus metrics on this port "
        "(0: off; the web UI serves them at /metrics)", metavar="PORT", group="observe",
        check=Range("must be a port number (0: off)", lo=0, hi=65535)),
    Opt("--metrics-bind", str, "127.0.0.1", "the address --metrics-port listens on (127.0.0.1: this machine "
        "only; 0.0.0.0: every interface, as in a container)", metavar="ADDR", group="observe"),
    Opt("--priority", str, "normal", "the load generator's scheduling priority: normal, high (nice -10) or "
        "realtime (SCHED_RR, where permitted; it starves a server on the same cores); a refused one falls back, and "
        "run.json says what was got",
        group="observe"),
    Opt("--timing", str, "read", "what times each response: read (the kernel's stamp of each socket read, with "
        "a per-request error bound when the client reads late) or capture (a kernel packet capture stamps every "
        "segment as it arrives, exact however late the client reads; loopback targets, needs root or "
        "CAP_NET_RAW); requests.csv timing_source says which timed each request", group="observe"),
    Opt("--progress-interval", float, 5.0, "headless runs: print a progress line this often (0: never)",
        metavar="S", group="observe", check=Range("must be 0 (off) or more", lo=0)),
    # -- outputs ---------------------------------------------------------------------
    Opt("--out", str, "", "run folder (default: reports/<run_id>/)", metavar="DIR", group="output"),
    Opt("--run-name", str, "", "label of the run, used in its folder name and reports", metavar="NAME",
        group="output"),
    Opt("--max-fail-ratio", float, 0.0, "exit with code 1 when more than this share of requests failed",
        metavar="R", group="output", check=Range("must be between 0 and 1", lo=0, hi=1)),
    Opt("--locust-tables", None, False, "tokenswarm run/sweep: also print Locust's own stats tables at the end "
        "(rounded; tokenswarm's table is printed either way, and locust_stats.csv is written)",
        action="store_true", group="output"),
)

BY_DEST = {o.dest: o for o in OPTIONS}



def env_default(opt: Opt, environ: dict[str, str] | None = None) -> Any:
    """The option's default, taken from its ``TOKENSWARM_*`` variable when set."""
    environ = os.environ if environ is None else environ
    raw = environ.get(opt.env)
    if raw is None:
        return opt.default
    if opt.action == "store_true":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if opt.action == "append":
        return [line for line in raw.splitlines() if line.strip()]
    return raw  # converted (and checked) by argparse's type


def add_options(parser: Any, *, locust: bool = False) -> None:
    """Add every option to an argparse parser, or to Locust's configargparse parser."""
    groups: dict[str, Any] = {}
    for opt in OPTIONS:
        group = groups.get(opt.group)
        if group is None:
            # Locust's web-UI keywords only work on its parser itself, not on argument groups
            group = groups[opt.group] = parser if locust else parser.add_argument_group(f"tokenswarm {opt.group}")
        kw: dict[str, Any] = {"help": opt.help, "dest": opt.dest}
        if opt.action:
            kw["action"] = opt.action
        if opt.type is not None and opt.action != "store_true":
            kw["type"] = opt.type
        if opt.metavar:
            kw["metavar"] = opt.metavar
        if locust:
            if opt.action != "append":  # configargparse wants "[a, b]" for lists: settings reads it instead
                kw["env_var"] = opt.env
            kw["default"] = opt.default
            kw["include_in_web_ui"] = bool(opt.web_ui)
            if opt.secret:
                kw["is_secret"] = True
        else:
            kw["default"] = env_default(opt)
        group.add_argument(opt.flag, **kw)


def to_argv(values: dict[str, Any]) -> list[str]:
    """Command-line arguments for Locust's parser (which has every option, :func:`add_options`) carrying the
    option values that differ from their defaults; secret options (and ``--header``, whose values may be keys)
    are left out: :func:`to_env` carries those, so keys never show on a command line."""
    argv: list[str] = []
    for dest, value in values.items():
        opt = BY_DEST.get(dest)
        if opt is None or value is None or value == opt.default or opt.secret or opt.action == "append":
            continue
        if opt.action == "store_true":
            argv.append(opt.flag)
        else:
            argv += [opt.flag, str(value)]
    return argv


def to_env(values: dict[str, Any], secret_only: bool = False) -> dict[str, str]:
    """``TOKENSWARM_*`` variables carrying option values to a child process; ``secret_only``: just the secret
    options and ``--header`` (the rest go on the command line, :func:`to_argv`)."""
    env: dict[str, str] = {}
    for dest, value in values.items():
        opt = BY_DEST.get(dest)
        if opt is None or value is None:
            continue
        if secret_only and not (opt.secret or opt.action == "append"):
            continue
        if opt.action == "append":
            env[opt.env] = "\n".join(value)
        elif opt.action == "store_true":
            env[opt.env] = "true" if value else "false"
        else:
            env[opt.env] = str(value)
    return env


def namespace_defaults() -> argparse.Namespace:
    """A namespace holding every option's default (for code paths without a parser)."""
    return argparse.Namespace(**{o.dest: env_default(o) for o in OPTIONS})
