"""The web UI's login (--web-login): what the compose and k8s files turn on when the UI leaves loopback."""

import http.cookiejar
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from conftest import wait_http


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_login_is_required_and_checks_the_password(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENSWARM_", "LOCUST_"))}
    env.update(TOKENSWARM_WEB_USERNAME="alice", TOKENSWARM_WEB_PASSWORD="s3cret-pw", LOCUST_WEB_LOGIN="true")
    proc = subprocess.Popen([sys.executable, "-m", "tokenswarm", "ui", "--web-port", str(port), "--sim-args",
                             "--ttft-ms 5 --tpot-ms 1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/login")
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        r = opener.open(base + "/", timeout=5)
        assert r.url.startswith(base + "/login")  # not logged in: sent to the login page
        for path in ("/stats/requests", "/tokenswarm/series", "/tokenswarm/ui.js"):
            with urllib.request.urlopen(base + path, timeout=5) as r:
                assert "/login" in r.url, path  # the API and tokenswarm's charts are protected too

        def login(user, pw):
            data = urllib.parse.urlencode({"username": user, "password": pw}).encode()
            return opener.open(base + "/tokenswarm-login", data=data, timeout=5)

        assert "/login" in login("alice", "wrong").url
        assert "/login" in login("bob", "s3cret-pw").url
        r = login("alice", "s3cret-pw")
        assert r.status == 200 and "/login" not in r.url
        with opener.open(base + "/stats/requests", timeout=5) as r:
            assert r.status == 200 and b"user_count" in r.read()
        with opener.open(base + "/", timeout=5) as r:
            assert b'<script src="./tokenswarm/ui.js"></script>' in r.read()  # the charts, logged in
        with opener.open(base + "/tokenswarm/ui.js", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/javascript") and b"tokenswarm-chart" in r.read()
        with opener.open(base + "/tokenswarm/series", timeout=5) as r:
            assert json.loads(r.read())["samples"] == []
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "s3cret-pw" not in out


def test_login_without_a_password_is_refused(cli):
    p = cli("ui", "--web-login", "--web-port", str(free_port()), timeout=60)
    assert p.returncode == 2 and "TOKENSWARM_WEB_PASSWORD" in p.stderr
