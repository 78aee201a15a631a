"""Where requests go: a base URL such as ``http://127.0.0.1:8000`` parsed into a :class:`Target`.

Errors (:class:`BadURL`) say what is wrong with the URL; the caller adds which option or file it came from.
Userinfo (``user:pass@``) and a query string are not kept: a target's URLs never carry secrets.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit


class BadURL(ValueError):
    """A base URL that cannot be used (scheme, host or port); the message starts with the URL, quoted."""


class Target(NamedTuple):
    """Where requests go: scheme (``http`` or ``https``), host name (no brackets), port, and the URL's path
    without its trailing slash (``""`` for none), which every request path is appended to."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """Parse a base URL; raises :class:`BadURL` naming what is wrong (no scheme, not http(s), no host,
        a bad port)."""
        if not url or "://" not in url:
            raise BadURL(f"{url!r}: expected a URL such as http://127.0.0.1:8000")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadURL(f"{url!r}: scheme must be http or https, not {parts.scheme!r}")
        if not parts.hostname:
            raise BadURL(f"{url!r}: no host name")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise BadURL(f"{url!r}: the port is not a number in 1-65535") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        """``host[:port]`` as the Host header writes it (the port left out when it is the scheme's default)."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, path: str) -> str:
        """The full URL of a request ``path`` (which starts with ``/``) under the base path."""
        return f"{self.scheme}://{self.netloc}{self.base_path}{path}"
