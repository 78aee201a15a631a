"""The locustfile ``tokenswarm run`` hands to Locust: tokenswarm's chat user, nothing else.

(The repository's locustfiles/ are the same thing for people running ``locust -f``.)
"""

from tokenswarm.loadgen import ChatUser


class Chat(ChatUser):
    """One streaming conversation per user; the dialect follows --engine/--dialect."""
