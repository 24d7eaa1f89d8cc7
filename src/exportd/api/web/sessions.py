"""The browser's session cookie and its CSRF token.

- The cookie (`exportd_session`) holds a random secret; the store keeps its sha256 (see
  `exportd.store.sessions`). It is HttpOnly, SameSite=Strict, scoped to `/`, expires
  with the session, and is Secure when the request came over HTTPS: the connection's
  own scheme, or `X-Forwarded-Proto` from a peer listed in `EXPORTD_TRUSTED_PROXIES`.
- The CSRF token is derived from the secret (an HMAC keyed by it): one per session,
  nothing more to store, and unguessable without the cookie. Forms carry it in a hidden
  `csrf` field, scripts in the `X-CSRF-Token` header; SameSite=Strict is the second
  line of defence.
- Signing in has no session yet: its form carries a random value that must match a
  short-lived `exportd_signin` cookie (double submit), so another site cannot sign a
  browser in with the attacker's token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets

from fastapi import Request, Response

from exportd.config import Settings

SESSION_COOKIE = "exportd_session"
SIGNIN_COOKIE = "exportd_signin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SIGNIN_COOKIE_SECONDS = 3600

_CSRF_PURPOSE = b"exportd csrf v1"


def csrf_token(session_secret: str) -> str:
    """The CSRF token of the session whose cookie holds `session_secret`."""
    digest = hmac.new(session_secret.encode(), _CSRF_PURPOSE, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_matches(session_secret: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_secret), str(given))


def same_value(expected: str | None, given: str | None) -> bool:
    """Both present and equal, compared in constant time."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def session_secret(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def cross_site(request: Request) -> bool:
    """The browser says another site made this request (`Sec-Fetch-Site`); refused for
    every state-changing form post, whatever its token."""
    return request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site")


def is_https(request: Request, settings: Settings) -> bool:
    """The request came over HTTPS: its own scheme, or a trusted proxy says so."""
    if request.url.scheme == "https":
        return True
    networks = settings.trusted_networks()
    if not networks or request.client is None:
        return False
    try:
        peer = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if not any(peer in network for network in networks):
        return False
    forwarded = request.headers.get("x-forwarded-proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def set_cookie(
    response: Response, request: Request, settings: Settings, name: str, value: str, age: int
) -> None:
    """An HttpOnly, SameSite=Strict cookie for the whole site, Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=is_https(request, settings),
    )


def set_session_cookie(
    response: Response, request: Request, settings: Settings, secret: str
) -> None:
    set_cookie(response, request, settings, SESSION_COOKIE, secret, settings.session_ttl_seconds)


def clear_cookie(response: Response, request: Request, settings: Settings, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=is_https(request, settings)
    )


def signin_nonce(request: Request) -> str:
    """The sign-in form's value: the browser's current `exportd_signin` cookie, or a new one."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


def set_signin_cookie(response: Response, request: Request, settings: Settings, nonce: str) -> None:
    set_cookie(response, request, settings, SIGNIN_COOKIE, nonce, SIGNIN_COOKIE_SECONDS)
