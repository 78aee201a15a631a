"""Text completions load test (``/v1/completions``), otherwise like chat.py.

    locust -f locustfiles/completions.py --engine vllm --host http://127.0.0.1:8000 --model M
"""

from locust import run_single_user

from tokenswarm.loadgen import CompletionsUser


class Completions(CompletionsUser):
    """One streaming completion per request, back to back."""


if __name__ == "__main__":
    run_single_user(Completions)
