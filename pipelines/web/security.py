"""Who may control a server: loopback binds are open, any other bind requires a token.

A token is sent as ``Authorization: Bearer <token>`` (or ``?token=<token>`` where a header cannot
be set, as when a browser opens the dashboard, and as socket.io's ``auth={'token': ...}``). It is
compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

__all__ = ["is_loopback", "new_token", "required_token", "token_matches"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for anything else, '0.0.0.0' included."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def required_token(host: str, token: str | None) -> str | None:
    """The token a server bound to `host` must require: `token` if given; a new one when `host`
    is not loopback and none was given; None (open) on loopback without a token."""
    if token:
        return token
    return None if is_loopback(host) else new_token()


def token_matches(expected: str | None, given: str | None) -> bool:
    """True when no token is required, or `given` is that token."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
