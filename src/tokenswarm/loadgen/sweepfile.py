"""The locustfile ``tokenswarm sweep`` hands to Locust: tokenswarm's chat user and the sweep shape."""

from tokenswarm.loadgen import ChatUser, SweepShape  # noqa: F401  (Locust picks up the shape class)


class Chat(ChatUser):
    """One streaming conversation per user; the dialect follows --engine/--dialect."""
