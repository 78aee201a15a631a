"""Concurrency (or request-rate) sweep: steps through levels and reports per level.

    locust -f locustfiles/sweep.py --headless --levels 1,2,4,8,16,32,64 --level-duration 30s -H http://127.0.0.1:8000
    locust -f locustfiles/sweep.py --rates 1,2,4,8 --level-duration 60s --engine vllm -H http://gpu:8000  # web UI

The shape reads tokenswarm's options (--levels or --rates, --level-duration, --level-requests,
--warmup, --slo); `tokenswarm sweep` runs this headless and prints the report.
"""

from locust import run_single_user

from tokenswarm.loadgen import ChatUser, SweepShape  # noqa: F401  (Locust picks up the shape class)


class Chat(ChatUser):
    """One streaming conversation per user, requests back to back (closed loop), or on schedule (rate mode)."""


if __name__ == "__main__":
    run_single_user(Chat)
