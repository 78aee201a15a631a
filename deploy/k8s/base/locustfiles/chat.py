"""Chat completions load test: closed-loop streaming users, one per concurrent stream.

    locust -f locustfiles/chat.py --engine vllm --host http://127.0.0.1:8000 --model M
    locust -f locustfiles/chat.py --headless -u 32 -t 30s     # against `make simengine`

Every tokenswarm option (``--max-tokens``, ``--input-len``, ...) works here, in
the web UI and as a TOKENSWARM_* variable; see ``locust -f locustfiles/chat.py --help``.
"""

from locust import run_single_user

from tokenswarm.loadgen import ChatUser


class Chat(ChatUser):
    """One streaming chat conversation per user, requests back to back."""


if __name__ == "__main__":
    run_single_user(Chat)
