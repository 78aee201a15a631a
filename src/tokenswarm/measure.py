"""Per-request measurement: the one place TTFT, TPOT, ITL and E2E are defined (the engine's own Prometheus
metrics are :mod:`tokenswarm.enginemetrics`; tokenswarm's exported ones :mod:`tokenswarm.loadgen.exporter`).

A :class:`StreamMeasure` is fed the parsed events of one streamed response,
each with the ``time.perf_counter()`` reading taken when its bytes arrived,
and turns them into a :class:`RequestRecord`. Everything else (Locust events,
requests.csv, reports, Prometheus) reads the record; nothing recomputes a
metric. No locust, no gevent: this module is pure and tested on its own.

Definitions (all times relative to ``send``, the moment just before the request
is written to the socket):

* TTFT: first event carrying generated output of any kind: visible content,
  reasoning text, a tool call's name or argument piece (also the legacy
  ``function_call``), a refusal, or an increase of a per-event token count.
  Role-only and empty chunks do not count. ``ttft_visible_ms`` is the first
  non-empty ``content``. ``output_kind`` says which kinds a request produced.
* E2E: the last output-carrying event. The stream's close (after the usage
  chunk or ``[DONE]``) is kept apart as ``close_ms``.
* Output tokens: server usage, else a local tokenizer on the generated text,
  else the number of output-carrying events (``token_source`` says which).
  The usage is checked against itself and the stream first (:func:`check_usage`;
  ``token_check`` names what contradicted it and which count was used).
* TPOT: ``(E2E - TTFT) / (output_tokens - 1)``, only when output_tokens > 1
  and the stream carried at least two output events: an answer delivered in
  one event has no per-token timing, so TPOT is undefined (None), never 0.
  Reasoning the usage counts but the stream never carried (hidden reasoning)
  came before TTFT: its tokens are left out of that output_tokens.
* ITL: gaps between consecutive output-carrying events; an event carrying
  k > 1 tokens (known from per-event token counts) splits its gap in k parts.
  Fewer than two output events: no gap, no ITL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

# --- status kinds -----------------------------------------------------------
STATUS_OK = "ok"
STATUS_CANCELLED = "cancelled"  # the client abandoned it on purpose (test end, cancel rate)
HTTP_ERROR = "http_error"
TIMEOUT = "timeout"
CONNECT_ERROR = "connect_error"
DISCONNECT = "disconnect"
MALFORMED = "malformed"
SERVER_ERROR_EVENT = "server_error_event"
EMPTY = "empty"
#: the stream carried output and ended in order (end marker, end of the HTTP message) but never said it was
#: finished (no finish reason): a gateway closing a dead upstream's stream itself looks like this
TRUNCATED = "truncated"
FAILURE_KINDS = (HTTP_ERROR, TIMEOUT, CONNECT_ERROR, DISCONNECT, MALFORMED, SERVER_ERROR_EVENT, EMPTY, TRUNCATED)
STATUSES = (STATUS_OK, STATUS_CANCELLED, *FAILURE_KINDS)

# --- token sources ------------------------------------------------------------
SOURCE_USAGE = "usage"  # the server said how many tokens it generated
SOURCE_TOKENIZER = "tokenizer"  # counted locally with --tokenizer
SOURCE_EVENTS = "events"  # one token per output-carrying event (a lower bound)

# --- output kinds (requests.csv ``output_kind``: the kinds a request produced, "+"-joined, in order) ---------
KIND_CONTENT = "content"  # visible text
KIND_REASONING = "reasoning"  # reasoning text (reasoning_content / reasoning)
KIND_TOKENS = "tokens"  # output known only by a token count (a special token with no text)
# other kinds are named by the dialect: tool_calls, function_call, refusal

# --- token checks (requests.csv ``token_check``: what contradicted the server's usage, "+"-joined) -----------
#: completion + reasoning = total - prompt, or reasoning > completion: the server left its reasoning tokens out
#: of ``completion_tokens`` (OpenAI counts them in); the count used is completion + reasoning
CHECK_REASONING_OUTSIDE = "reasoning_outside_completion"
#: prompt + completion != total, and reasoning does not explain it; the count used stays completion
CHECK_TOTAL_MISMATCH = "total_mismatch"
#: usage says 0 generated tokens after output events arrived: the usage is not the engine's (a gateway made it
#: up); the count used is the local one (tokenizer, else events)
CHECK_ZERO_USAGE = "zero_usage_after_output"
#: the stream carried output and ended without a finish reason (status ``truncated``)
CHECK_NO_FINISH = "no_finish"

# Offset that turns perf_counter readings into Unix epoch seconds. Taken once
# per process so every record of a process shares one clock.
EPOCH_OFFSET = time.time() - time.perf_counter()


def epoch(perf: float) -> float:
    """Unix epoch seconds for a ``time.perf_counter()`` reading of this process."""
    return perf + EPOCH_OFFSET


class Usage(NamedTuple):
    """Token usage as a server reported it (None where it said nothing)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None


class Event(NamedTuple):
    """What one server-sent event meant, as a dialect parsed it.

    ``text`` is visible content (chat ``content``, completions ``text``, a native dialect's token text);
    ``reasoning`` is reasoning text; ``extra`` is any other generated output, of the kind ``kind``
    names (``tool_calls``: function names and argument pieces; ``function_call``, the legacy form;
    ``refusal``). ``tokens`` is a cumulative count of generated tokens carried by this very event
    (SGLang ``meta_info``, TGI's token index, continuous usage stats); a closing usage summary goes in
    ``usage`` instead, so it never counts as output.
    """

    text: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish: str | None = None
    done: bool = False
    error: str | None = None
    response_id: str | None = None
    tokens: int | None = None
    extra: str = ""
    kind: str = ""


NOTHING = Event()  # a line that carries nothing (role-only chunk, keep-alive)


def tpot_ms(e2e_ms: float | None, ttft_ms: float | None, output_tokens: int | None,
            output_events: int = 2) -> float | None:
    """Time per output token after the first: (E2E - TTFT) / (tokens - 1), in ms; None if tokens <= 1 or the
    stream carried fewer than two output events (one event has no per-token timing: DESIGN.md, "TPOT")."""
    if e2e_ms is None or ttft_ms is None or output_tokens is None or output_tokens <= 1 or output_events < 2:
        return None
    return (e2e_ms - ttft_ms) / (output_tokens - 1)


def check_usage(usage: Usage, output_events: int) -> tuple[int | None, str]:
    """The server's usage checked against itself and the stream: ``(output tokens to use, check)``.

    ``output tokens`` is None when the usage cannot be trusted (the caller counts locally); ``check`` is ""
    when nothing contradicted it, else the ``CHECK_*`` names of the rules broken, "+"-joined. The rules, in
    order (dialect-agnostic: they read :class:`Usage` only):

    1. zero usage after output: ``completion_tokens`` 0 when ``output_events`` > 0 -> None, ``CHECK_ZERO_USAGE``
       (a gateway ending a dead upstream's stream with usage all 0, maximhq/bifrost #5546);
    2. reasoning vs completion: OpenAI counts reasoning tokens inside ``completion_tokens``, so reasoning >
       completion, or prompt + completion + reasoning == total, means they were left out -> completion +
       reasoning, ``CHECK_REASONING_OUTSIDE`` (Gemini behind OpenAI-compatible gateways: completion 6,
       reasoning 190, total 216 with prompt 20);
    3. prompt + completion vs total: any other mismatch keeps completion and says ``CHECK_TOTAL_MISMATCH``.
    """
    done = usage.completion_tokens
    if not isinstance(done, int):
        return (None, "") if done is None else (None, CHECK_TOTAL_MISMATCH)
    prompt, total, reasoning = (v if isinstance(v, int) else None
                                for v in (usage.prompt_tokens, usage.total_tokens, usage.reasoning_tokens))
    if done == 0 and output_events > 0:
        return None, CHECK_ZERO_USAGE
    if reasoning and (reasoning > done or (prompt is not None and total is not None and total != prompt + done
                                           and total == prompt + done + reasoning)):
        return done + reasoning, CHECK_REASONING_OUTSIDE
    if prompt is not None and total and total != prompt + done:
        return done, CHECK_TOTAL_MISMATCH
    return done, ""


def itl_ms(times: list[float], tokens: list[int]) -> list[float]:
    """Inter-token latencies in ms from output-event times (s) and tokens per event.

    The gap before event i is split into ``tokens[i]`` equal parts. Extra
    tokens of the first event arrive with it and have no gap of their own.
    """
    out: list[float] = []
    prev = None
    for t, k in zip(times, tokens):
        if prev is not None:
            gap = (t - prev) * 1000.0
            if k <= 1:
                out.append(gap)
            else:
                part = gap / k
                out.extend([part] * k)
        prev = t
    return out


@dataclass(slots=True)
class RequestRecord:
    """One request, sent and finished: the row of requests.csv.

    ``start_time`` is Unix epoch seconds at send; ``*_ms`` are milliseconds
    after send. Failures keep whatever was measured before they happened.
    """

    request_id: str
    start_time: float
    status: str = STATUS_OK
    http_status: int | None = None
    ttft_ms: float | None = None
    ttft_visible_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    close_ms: float | None = None
    itl_ms: list[float] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    token_source: str | None = None
    output_tokens_tokenizer: int | None = None  # the local tokenizer's count beside the server's (--tokenizer)
    output_events: int = 0
    output_kind: str = ""  # the kinds of output, "+"-joined in order of appearance: content, reasoning, tool_calls ...
    finish_reason: str | None = None
    token_check: str = ""  # what contradicted the server's usage (CHECK_* names, "+"-joined); "" : nothing
    lingered: bool = False  # the answer was complete but the server kept its stream open; the client closed it
    error: str = ""
    retry_after_s: float | None = None  # the server's Retry-After on a 429/503 (not a requests.csv column)
    backoff_ms: float | None = None  # how long the user waited after this request before its next
    level: float = 0
    worker: str = ""
    user: int = -1
    prompt_id: str = ""
    prefix_id: str = ""
    conversation_id: str = ""
    turn: int = 0
    scheduled_time: float | None = None
    connect_ms: float | None = None
    ttft_error_bound_ms: float | None = None  # the first output event arrived no more than this before its stamp
    e2e_error_bound_ms: float | None = None  # the same for the last output event (0: exact, the read's own)
    #: which clock timed the send and the events: ``read`` (the reads' kernel stamps, with the bounds above) or
    #: ``capture`` (a kernel packet capture's stamp of each segment, --timing capture: bounds 0)
    timing_source: str = "read"
    received_bytes: int = 0  # bytes of the response read from the socket, headers included (not a column)
    request_bytes: int = 0  # bytes of the request written, head and body (images and audio included)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_KINDS


class StreamMeasure:
    """Collects one response's event times; :meth:`record` computes the metrics once.

    Feed it with :meth:`feed` for every parsed event, in arrival order, with
    the perf_counter time its bytes arrived. It keeps only what the formulas
    need: times of output-carrying events, tokens per event, and the text
    (for a tokenizer, when one is configured).
    """

    __slots__ = (
        "send",
        "first",
        "first_visible",
        "times",
        "ktokens",
        "text",
        "reasoning",
        "extra",
        "kinds",
        "cum_tokens",
        "usage",
        "finish",
        "done",
        "error",
        "response_id",
        "closed",
        "first_bound",
        "last_bound",
    )

    def __init__(self, send: float) -> None:
        self.send = send
        self.first: float | None = None
        self.first_visible: float | None = None
        self.times: list[float] = []
        self.ktokens: list[int] = []
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.extra: list[str] = []  # other generated output (tool calls, refusals)
        self.kinds: list[str] = []  # the kinds of output seen, in order
        self.cum_tokens = 0
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.done = False
        self.error: str | None = None
        self.response_id: str | None = None
        self.closed: float | None = None
        self.first_bound = 0.0  # seconds: how much earlier than its stamp the first output event may have come
        self.last_bound = 0.0  # the same for the latest output event

    def feed(self, t: float, ev: Event, bound: float = 0.0) -> None:
        """Take one parsed event that arrived at perf_counter time ``t``, or up to ``bound`` seconds earlier
        (0: ``t`` is its own arrival; the client's read bounds, :meth:`tokenswarm.client.Connection.recv`)."""
        k = 0
        tok = ev.tokens
        # per-event counts are trusted only when they ran from the start; a count that first shows
        # up late (usage riding on the finish chunk) is a total, and goes through ``usage`` instead
        if tok is not None and tok > self.cum_tokens and (self.cum_tokens or not self.times):
            k = tok - self.cum_tokens
            self.cum_tokens = tok
        kinds = self.kinds
        if ev.text:
            self.text.append(ev.text)
            if self.first_visible is None:
                self.first_visible = t
            k = k or 1
            if KIND_CONTENT not in kinds:
                kinds.append(KIND_CONTENT)
        if ev.reasoning:
            self.reasoning.append(ev.reasoning)
            k = k or 1
            if KIND_REASONING not in kinds:
                kinds.append(KIND_REASONING)
        if ev.extra:
            self.extra.append(ev.extra)
            k = k or 1
            if ev.kind not in kinds:
                kinds.append(ev.kind)
        if k:
            if self.first is None:
                self.first = t
                self.first_bound = bound
            self.last_bound = bound
            self.times.append(t)
            self.ktokens.append(k)
            if not (ev.text or ev.reasoning or ev.extra) and KIND_TOKENS not in kinds:
                kinds.append(KIND_TOKENS)  # output known only by its token count
        if ev.usage is not None:
            self.usage = _merge_usage(self.usage, ev.usage)
        if ev.finish:
            self.finish = ev.finish
        if ev.response_id and self.response_id is None:
            self.response_id = ev.response_id
        if ev.error is not None and self.error is None:
            self.error = ev.error
        if ev.done:
            self.done = True

    @property
    def output_events(self) -> int:
        return len(self.times)

    def generated(self) -> str:
        """All generated text, every kind (reasoning, content, tool calls ...): what a tokenizer counts."""
        return "".join(self.reasoning) + "".join(self.text) + "".join(self.extra)

    def record(
        self,
        request_id: str,
        status: str,
        *,
        closed: float | None = None,
        http_status: int | None = None,
        error: str = "",
        input_tokens: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> RequestRecord:
        """Compute the request's metrics. ``count_tokens`` is the local tokenizer, if any."""
        send = self.send
        ttft = (self.first - send) * 1000.0 if self.first is not None else None
        ttft_vis = (self.first_visible - send) * 1000.0 if self.first_visible is not None else None
        e2e = (self.times[-1] - send) * 1000.0 if self.times else None
        usage = self.usage
        out_tokens: int | None = None
        source: str | None
        check = ""
        if usage is not None and usage.completion_tokens is not None:
            out_tokens, check = check_usage(usage, len(self.times))
        if status == TRUNCATED:
            check = f"{check}+{CHECK_NO_FINISH}" if check else CHECK_NO_FINISH
        if out_tokens is not None:
            source = SOURCE_USAGE
        elif self.cum_tokens:
            out_tokens, source = self.cum_tokens, SOURCE_USAGE
        elif count_tokens is not None and self.times:
            out_tokens = count_tokens(self.generated())
            source = SOURCE_TOKENIZER
        elif self.times:
            out_tokens, source = sum(self.ktokens), SOURCE_EVENTS
        else:
            out_tokens, source = (0, SOURCE_EVENTS) if status == STATUS_OK else (None, None)
        local = None
        if source == SOURCE_USAGE and count_tokens is not None and self.times:
            local = count_tokens(self.generated())
        elif source == SOURCE_TOKENIZER:
            local = out_tokens
        if usage is not None and usage.prompt_tokens is not None and not check.startswith(CHECK_ZERO_USAGE):
            input_tokens = usage.prompt_tokens  # (a usage made up after output is not the engine's: not this either)
        reasoning_tokens = usage.reasoning_tokens if usage is not None else None
        if reasoning_tokens is None and self.reasoning and count_tokens is not None:
            reasoning_tokens = count_tokens("".join(self.reasoning))
        # hidden reasoning (counted in the usage, never streamed: OpenAI's reasoning models, gateways that drop
        # it) was generated before the first output event seen, so inside TTFT: TPOT spreads the time after TTFT
        # over the tokens after it (100 hidden of 105 made a 20 ms TPOT read 0.8 ms). Hidden only where the stream
        # had no more output events than the tokens left: reasoning streamed inside the content (<think>...)
        # comes after TTFT and its events outnumber the answer's tokens
        timed_tokens = out_tokens
        if (source == SOURCE_USAGE and not self.reasoning and out_tokens is not None and reasoning_tokens
                and 0 < reasoning_tokens < out_tokens and len(self.times) <= out_tokens - reasoning_tokens):
            timed_tokens = out_tokens - reasoning_tokens
        return RequestRecord(
            request_id=self.response_id or request_id,
            start_time=epoch(send),
            status=status,
            http_status=http_status,
            ttft_ms=ttft,
            ttft_visible_ms=ttft_vis,
            tpot_ms=tpot_ms(e2e, ttft, timed_tokens, len(self.times)),
            e2e_ms=e2e,
            close_ms=(closed - send) * 1000.0 if closed is not None else None,
            itl_ms=itl_ms(self.times, self.ktokens),
            input_tokens=input_tokens,
            output_tokens=out_tokens,
            reasoning_tokens=reasoning_tokens,
            cached_tokens=usage.cached_tokens if usage is not None else None,
            token_source=source,
            output_tokens_tokenizer=local,
            output_events=len(self.times),
            output_kind="+".join(self.kinds),
            finish_reason=self.finish,
            token_check=check,
            error=error,
            ttft_error_bound_ms=self.first_bound * 1000.0 if ttft is not None else None,
            e2e_error_bound_ms=self.last_bound * 1000.0 if e2e is not None else None,
        )


def _merge_usage(old: Usage | None, new: Usage) -> Usage:
    """Later usage wins field by field; a field the new chunk omits keeps its old value."""
    if old is None:
        return new
    return Usage(*(n if n is not None else o for n, o in zip(new, old)))
