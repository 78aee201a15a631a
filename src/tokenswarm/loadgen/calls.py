"""Requests ready to send: where a process's prompts come from, and their bodies built ahead.

A :class:`CallFactory` lives on every process that runs users. It owns the prompt source of the run's
workload (a dataset, shared prefixes in front of it, multi-turn conversations; a trace gives its own
prompts with its send times), keeps request bodies built ahead while the event loop is idle (a user that
finishes a request sends the next at once, with no prompt built in the middle of other streams' reads),
and makes each :class:`tokenswarm.client.StreamCall`: its id, its headers, whether this user will cancel
it after a few tokens (``--cancel-rate``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
from collections import deque
from typing import Any

import gevent

from tokenswarm.client import Connection, StreamCall, request_head
from tokenswarm.datasets import Prompt, open_dataset
from tokenswarm.errors import SettingsError
from tokenswarm.media import FILE_TYPES, SyntheticMedia, resolve
from tokenswarm.settings import Settings
from tokenswarm.workloads import Conversations, SharedPrefixes

READY_MIN = 64  # request bodies kept built ahead (at least; twice the users otherwise)
REFILL_SLICE = 16  # bodies built per idle moment
REFILL_S = 0.05


class CallFactory:
    """Prompts and request bodies of one process (``worker``, shard ``shard`` of ``shards`` of the dataset).
    ``users()``: the process's user count now (how many bodies to keep ready). SettingsError for a dataset
    file that cannot be read."""

    def __init__(self, settings: Settings, worker: str, shard: int, shards: int, tokenizer: Any,
                 users: Any = lambda: 0, rng: random.Random | None = None, capture: Any = None) -> None:
        self.settings = settings
        self.capture = capture  # the process's packet capture (--timing capture), handed to every connection
        self.tokenizer = tokenizer
        self._users = users
        self._rng = rng or random.Random(settings.seed)
        self.prompts: Any = None  # single requests: the prompt source
        self.conversations: Conversations | None = None  # multi-turn
        if settings.trace:
            pass  # the trace's schedule gives each request its prompt (tokenswarm.strategies.Trace)
        elif settings.turns:
            path = settings.dataset.path if settings.dataset.name == "sharegpt" else ""
            self.conversations = Conversations(settings.turns, settings.turn_input_len, settings.seed, shard,
                                               tokenizer, path, shards)
        else:
            self.prompts = open_dataset(settings.dataset, shard, shards, tokenizer, settings.request.max_tokens)
            if settings.prefix_len:
                self.prompts = SharedPrefixes(self.prompts, settings.prefix_len, settings.num_prefixes,
                                              settings.seed, shard, tokenizer)
        self.whole = settings.dialect.whole(settings.request)  # one JSON answer, not a stream
        self.media = SyntheticMedia(settings.media, settings.seed * 7919 + shard) if settings.media.enabled else None
        self._check_media()
        self.head = request_head(settings.target, "POST", settings.endpoint, settings.stream_headers())
        self.await_usage = settings.await_usage
        self.count_tokens = tokenizer.count if tokenizer is not None else None
        self._ids = itertools.count(1)
        self._prefix = f"{worker}-{os.getpid():x}-"
        self._ready: deque[tuple[Prompt, bytes]] = deque()  # request bodies built ahead
        self._refiller: gevent.Greenlet | None = gevent.spawn(self._refill) if self.prompts is not None else None

    def _check_media(self) -> None:
        """SettingsError when the dataset names media of a kind the run's dialect sends no part for."""
        source = getattr(self.prompts, "base", self.prompts)
        kinds = {FILE_TYPES.get(os.path.splitext(path)[1].lower(), "image/").split("/")[0]
                 for p in getattr(source, "prompts", None) or [] for path in (p.media or [])}
        dialect = self.settings.dialect
        for kind in sorted(kinds - dialect.media_kinds):
            raise SettingsError(f"the dataset names {kind} files, and the {dialect.name} dialect sends no {kind} "
                                "parts")

    def dataset_counts(self) -> dict[str, Any] | None:
        """A file dataset's counts (records read, used, skipped by reason); None for other sources."""
        source = getattr(self.prompts, "base", self.prompts)  # shared prefixes wrap the dataset
        describe = getattr(source, "describe", None)
        info = describe() if describe is not None else None
        return info if info and "records" in info else None

    def connection(self) -> Connection:
        s = self.settings
        return Connection(s.target, s.connect_timeout, s.read_timeout, capture=self.capture)

    def _prepare(self, prompt: Prompt | None = None) -> tuple[Prompt, bytes]:
        """The next prompt (or ``prompt``) and its request body bytes."""
        s = self.settings
        if prompt is None:
            prompt = next(self.prompts)
            if s.dialect.batched and s.request.batch_size > 1:  # embeddings' inputs, rerank's documents
                more = [next(self.prompts) for _ in range(s.request.batch_size - 1)]
                counts = [p.input_tokens for p in (prompt, *more)]
                prompt = dataclasses.replace(prompt, batch=[prompt.text] + [p.text for p in more],
                                             input_tokens=None if None in counts else sum(counts))  # type: ignore
        if prompt.media or self.media is not None:  # files a record names; fresh synthetic media
            parts = resolve(prompt.media or []) + (self.media.parts() if self.media is not None else [])
            prompt = dataclasses.replace(prompt, media=parts)
        return prompt, json.dumps(s.dialect.body(prompt, s.request), separators=(",", ":")).encode()

    def _refill(self) -> None:
        ready = self._ready
        while True:
            want = max(READY_MIN, 2 * self._users())
            if len(ready) >= want:
                gevent.sleep(REFILL_S)
                continue
            gevent.idle()
            for _ in range(min(REFILL_SLICE, want - len(ready))):
                ready.append(self._prepare())

    def call(self, conn: Connection, prompt: Prompt | None = None) -> StreamCall:
        """The next request (of ``prompt``, else the next prompt of the source), ready to run on ``conn``; its
        prompt is ``call.prompt``."""
        if prompt is not None:
            prompt, body = self._prepare(prompt)
        else:
            prompt, body = self._ready.popleft() if self._ready else self._prepare()
        rid = self._prefix + str(next(self._ids))
        cancel_after = None
        rate = self.settings.cancel_rate
        if rate and self._rng.random() < rate:  # this user will close the tab after a few tokens
            n = prompt.max_tokens or self.settings.request.max_tokens
            cancel_after = self._rng.randint(1, max(1, n - 1))
        call = StreamCall(conn, self.settings.dialect, self.head + b"X-Request-Id: " + rid.encode() + b"\r\n", body,
                          rid, input_tokens=prompt.input_tokens, count_tokens=self.count_tokens,
                          cancel_after=cancel_after, whole=self.whole, await_usage=self.await_usage)
        call.prompt = prompt  # type: ignore[attr-defined]
        return call

    def close(self) -> None:
        if self._refiller is not None:
            self._refiller.kill(block=False)
            self._refiller = None
