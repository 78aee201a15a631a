"""Plain HTTP requests, not measured, through ``requests``: the preflight's ``/v1/models``, the engine's
``/metrics``.

:class:`PlainClient` sends GETs over one kept-alive connection and returns a :class:`Reply` for any HTTP
answer, whatever its status. When no complete answer comes it raises :class:`FetchError` (an OSError):
one line, the reason alone (``Connection refused``, ``no answer within 5s``), never a URL or a header value,
so the caller names the URL it asked (a :meth:`~tokenswarm.http.target.Target.url`, which holds no
userinfo).

Like the measured path, it ignores the environment (no proxy variables, no ``.netrc``) and follows no
redirect (the API key would go with it). Timeouts bound the connection and each read, not the whole
answer: under gevent's monkey-patching (Locust processes) its sockets are cooperative, so a slow server delays
only the greenlet that asked, and a caller there that needs a bound on the whole request wraps it in
``gevent.Timeout`` (:mod:`tokenswarm.loadgen.enginescrape` does).
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import NamedTuple

import requests
import urllib3.exceptions

from tokenswarm import __version__

MAX_BODY_BYTES = 32 * 1024 * 1024  # an answer larger than this is refused (a /metrics page is well under 1 MiB)
READ_SIZE = 65536

#: FetchError kinds
UNREACHABLE = "unreachable"  # no connection, or the connection failed (refused, reset, no such host, TLS)
TIMEOUT = "timeout"  # no connection or no (whole) answer in time
BAD_RESPONSE = "bad_response"  # the server broke HTTP (closed before answering, bad status line or chunking)

_BAD_HTTP = (http.client.HTTPException, urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError,
             urllib3.exceptions.HeaderParsingError, requests.exceptions.ContentDecodingError)


class Reply(NamedTuple):
    """An HTTP answer: status code, reason phrase, headers (case-insensitive names) and the whole body
    (content encoding such as gzip undone)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


class FetchError(OSError):
    """A plain request that got no complete HTTP answer.

    ``kind`` is :data:`UNREACHABLE`, :data:`TIMEOUT` or :data:`BAD_RESPONSE`; ``reason`` (also ``str()``) says
    why in one line without the URL; ``timeout_s`` is the limit that ran out (timeouts only).
    """

    def __init__(self, kind: str, reason: str, timeout_s: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        return self.reason


class PlainClient:
    """GET requests with ``headers`` (API key included) over a kept-alive connection.

    ``connect_timeout_s`` bounds the connection, ``read_timeout_s`` each read; an answer larger than
    ``max_body_bytes`` is refused. Use as a context manager, or call :meth:`close` (which drops the kept-alive
    connection; the client stays usable and connects again).
    """

    def __init__(self, connect_timeout_s: float, read_timeout_s: float,
                 headers: Mapping[str, str] | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        s = requests.Session()
        s.trust_env = False  # no proxy variables, no .netrc credentials: the measured path uses neither
        s.headers.update({"User-Agent": f"tokenswarm/{__version__}", "Accept": "*/*", **(headers or {})})
        self.session = s

    def get(self, url: str) -> Reply:
        """GET ``url``: the answer, whatever its status; raises :class:`FetchError`."""
        try:
            with self.session.get(url, timeout=(self.connect_timeout_s, self.read_timeout_s), stream=True,
                                  allow_redirects=False) as r:
                parts: list[bytes] = []
                size = 0
                for part in r.iter_content(READ_SIZE):
                    parts.append(part)
                    size += len(part)
                    if size > self.max_body_bytes:
                        raise FetchError(BAD_RESPONSE, f"answer larger than {self.max_body_bytes} bytes")
                return Reply(r.status_code, r.reason or "", r.headers, b"".join(parts))
        except FetchError:
            self.close()  # the answer was left unread: its connection cannot carry the next request
            raise
        except requests.RequestException as e:
            raise self._failure(e) from None

    def _failure(self, e: requests.RequestException) -> FetchError:
        if isinstance(e, requests.exceptions.InvalidHeader):  # its own message would show the header's value
            return FetchError(UNREACHABLE, "a request header holds a line break or leading white space")
        if isinstance(e, requests.ConnectTimeout):
            return FetchError(TIMEOUT, f"no connection within {self.connect_timeout_s:g}s", self.connect_timeout_s)
        chain = _causes(e)
        if isinstance(e, requests.ReadTimeout) or any(isinstance(x, urllib3.exceptions.ReadTimeoutError)
                                                      for x in chain):
            return FetchError(TIMEOUT, f"no answer within {self.read_timeout_s:g}s", self.read_timeout_s)
        root = chain[-1]
        if isinstance(root, http.client.RemoteDisconnected):
            return FetchError(BAD_RESPONSE, "connection closed before the response")
        if isinstance(root, http.client.BadStatusLine):
            return FetchError(BAD_RESPONSE, f"bad status line {_oneline(root)!r}")
        if isinstance(e, requests.exceptions.ChunkedEncodingError) or isinstance(root, _BAD_HTTP):
            return FetchError(BAD_RESPONSE, _oneline(root))
        if isinstance(root, OSError) and root.strerror:
            return FetchError(UNREACHABLE, _oneline(root.strerror))
        return FetchError(UNREACHABLE, _oneline(root))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> PlainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _causes(e: BaseException) -> list[BaseException]:
    """``e`` and what it wraps, outermost first: ``__cause__``, urllib3's ``reason``, or a last argument that
    is itself an exception (how requests and urllib3 wrap the socket's error)."""
    out = [e]
    while len(out) < 10:
        x = out[-1]
        inner = getattr(x, "reason", None)
        if not isinstance(inner, BaseException):
            inner = x.__cause__
        if inner is None and x.args and isinstance(x.args[-1], BaseException):
            inner = x.args[-1]
        if inner is None or inner in out:
            break
        out.append(inner)
    return out


def _oneline(x: object) -> str:
    text = " ".join(str(x).split()) or type(x).__name__
    return text[:200]
