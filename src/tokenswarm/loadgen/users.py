"""Locust user classes: each user is one closed-loop stream of LLM requests.

A user holds one keep-alive connection and, in a loop with no wait, sends a
request when its process's strategy allows (at once in a closed loop; at the
next planned send in an open one), reads its stream to the end and hands the
record to its process's :class:`~tokenswarm.loadgen.swarm.Swarm`.
After a failure it may wait first (:mod:`tokenswarm.pushback`: what a 429/503's
Retry-After asks, or a backoff, so no user spins on errors). All measuring is
in :mod:`tokenswarm.client` and :mod:`tokenswarm.measure`.
"""

from __future__ import annotations

from typing import ClassVar

import gevent
from gevent import GreenletExit
from locust import User, constant, task
from locust.exception import StopUser

from tokenswarm.loadgen import plugin as _plugin  # noqa: F401  (registers tokenswarm's Locust listeners)
from tokenswarm.loadgen.swarm import Swarm

IDLE_S = 0.5


class LLMUser(User):
    """Streams LLM requests back to back on one connection (a closed loop: concurrency = users).

    Configure it with tokenswarm's options (``--engine``, ``--model``,
    ``--max-tokens``, ...); the class attributes below set defaults for a
    locustfile.
    """

    abstract = True
    wait_time = constant(0)
    #: dialect to use when ``--dialect`` is not given and the engine preset is the default
    dialect: ClassVar[str] = ""

    def on_start(self) -> None:
        self.swarm: Swarm | None = None
        self.conn = None
        self.conv = None  # multi-turn: this user's conversation
        self.wait_s = 0.0  # backoff before the next request
        self.staggered = False  # its first send of the level has waited its part of a lifetime

    def _join(self) -> Swarm | None:
        """This process's swarm of the test in progress (None while it is being set up, e.g. a worker waiting
        for its master's settings, or when the test could not start)."""
        role = getattr(self.environment, "tokenswarm", None)
        swarm: Swarm | None = getattr(role, "swarm", None)
        if swarm is not None and swarm is not self.swarm:
            self.swarm = swarm
            self.uid = swarm.next_user()
            self.conn = swarm.connection()
            self.backoff = swarm.backoff()
        return swarm

    def on_stop(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    @task
    def generate(self) -> None:
        swarm = self.swarm or self._join()
        if swarm is None:  # being set up, or the test could not be (reason logged; it is being stopped)
            gevent.sleep(IDLE_S)
            return
        if not self.staggered:  # closed loop: the first send waits a random part of a request lifetime
            self.staggered = True
            swarm.stagger()
        if self.wait_s:  # the last request failed: wait what the server asked, or back off
            swarm.pause(self.wait_s)
            self.wait_s = 0.0
        scheduled = None
        prompt = None
        if swarm.open_loop:
            due = swarm.next_send()  # open loop: wait for the planned send time
            if due is None:
                raise StopUser()
            scheduled, prompt = due
        if not swarm.take_ticket():  # on a worker: granted by the master before it is sent
            raise StopUser()
        if swarm.held:  # a hold began while the grant was on its way: this send waits for the next level
            swarm.budget.release()
            return
        conv = None
        conversations = swarm.calls.conversations
        if conversations is not None:
            if self.conv is None or self.conv.done:
                self.conv = conversations.new()
            conv = self.conv
            prompt = conv.next_prompt(swarm.tokenizer)
        call = swarm.calls.call(self.conn, prompt)
        level = swarm.level
        try:
            rec = swarm.run(call)
        except GreenletExit:
            swarm.records.finish(call.abort("stopped at test end"), self.uid, call.prompt, level, scheduled)
            raise
        self.wait_s = self.backoff.after(rec)
        if self.wait_s:
            rec.backoff_ms = self.wait_s * 1000.0
        swarm.records.finish(rec, self.uid, call.prompt, level, scheduled)
        if conv is not None:
            if rec.ok:  # the model's own answer joins the history the next turn sends
                conv.add_reply(call.prompt.messages[-1]["content"], call.text())
                if swarm.settings.think_time and not conv.done:
                    gevent.sleep(swarm.settings.think_time)
            else:
                self.conv = None  # a failed or cancelled turn ends the conversation


class ChatUser(LLMUser):
    """OpenAI chat completions (or whatever dialect the engine preset speaks). Subclass it in a locustfile."""

    abstract = True


class CompletionsUser(LLMUser):
    """OpenAI text completions (``/v1/completions``). Subclass it in a locustfile."""

    abstract = True
    dialect = "openai-completions"
