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


def token_matches(expected: str | None, given: object) -> bool:
    """True when no token is required, or `given` is that token; False for anything else.

    Total: `given` is whatever a client sent (any JSON value of a socket.io ``auth``, a header
    that aiohttp decoded with surrogate escapes because it was not UTF-8) and never makes this
    raise. Only a str (that is valid text) or bytes can match; it is compared in constant time.
    """
    if expected is None:
        return True
    if isinstance(given, str):
        try:
            given = given.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 on the wire
            return False
    if not isinstance(given, bytes):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given)
