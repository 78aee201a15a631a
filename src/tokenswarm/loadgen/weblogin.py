"""A login for Locust's web UI (``--web-login``), with the credentials from the environment.

Locust 2.47's ``--web-login`` only installs Flask-Login; checking passwords is
left to the application. With ``--web-login`` (``LOCUST_WEB_LOGIN=true``),
tokenswarm checks a user name and password from ``TOKENSWARM_WEB_USERNAME``
(default ``tokenswarm``) and ``TOKENSWARM_WEB_PASSWORD`` (required) in
constant time. The docker-compose and Kubernetes files turn it on, because
there the UI listens beyond loopback. The credentials are not options, so they
are never shown in the UI nor sent to workers.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
from typing import Any

from flask import Blueprint, redirect, request, session, url_for
from flask_login import UserMixin, login_user

from tokenswarm.exitstatus import ExitStatus

LOGIN_PATH = "/tokenswarm-login"


class _WebUser(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


def install(web_ui: Any) -> None:
    """Check logins against the environment's credentials; exits 2 when the password is missing."""
    username = os.environ.get("TOKENSWARM_WEB_USERNAME") or "tokenswarm"
    password = os.environ.get("TOKENSWARM_WEB_PASSWORD", "")
    if not password:
        print("tokenswarm: error: --web-login needs TOKENSWARM_WEB_PASSWORD (the web UI's password)",
              file=sys.stderr, flush=True)
        sys.exit(ExitStatus.BAD_INPUT)
    web_ui.app.secret_key = secrets.token_hex(32)
    web_ui.login_manager.user_loader(lambda uid: _WebUser(uid) if uid == username else None)
    web_ui.auth_args = {"username_password_callback": LOGIN_PATH}
    bp = Blueprint("tokenswarm_login", __name__)

    @bp.route(LOGIN_PATH, methods=["POST"])
    def login_submit() -> Any:
        ok_user = hmac.compare_digest(request.form.get("username", "").encode(), username.encode())
        ok_pass = hmac.compare_digest(request.form.get("password", "").encode(), password.encode())
        if ok_user and ok_pass:
            login_user(_WebUser(username))
            return redirect(url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))

    web_ui.app.register_blueprint(bp)
