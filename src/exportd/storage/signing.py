"""Signed, expiring download links: `<payload>.<signature>`, both base64url, where the
payload names the job, the artifact and the expiry, and the signature is its HMAC-SHA256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson

from exportd.errors import LinkExpired, LinkTampered


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, job_id: str, name: str, expires_at: int) -> str:
    payload = _b64(orjson.dumps([job_id, name, expires_at]))
    signature = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


MAX_EXPIRY = 2**63 - 1


def verify(key: bytes, link: str, now: float | None = None) -> tuple[str, str]:
    """The (job id, artifact name) a link grants; raises `LinkTampered` for anything but
    a link `sign` made with `key` (bad signature, base64, JSON or payload shape) and
    `LinkExpired` past its expiry."""
    payload, _, signature = link.partition(".")
    if not payload.isascii() or not signature.isascii():
        raise LinkTampered("the download link is not valid")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise LinkTampered("the download link is not valid")
    job_id, name, expires_at = _grant(payload)
    if (time.time() if now is None else now) >= expires_at:
        raise LinkExpired("the download link has expired")
    return job_id, name


def _grant(payload: str) -> tuple[str, str, int]:
    try:
        decoded = orjson.loads(_unb64(payload))
    except ValueError as exc:  # bad base64 (binascii.Error) or JSON (JSONDecodeError)
        raise LinkTampered("the download link is not valid") from exc
    match decoded:
        case [str(job_id), str(name), int(expires_at)] if (
            not isinstance(expires_at, bool) and 0 <= expires_at <= MAX_EXPIRY
        ):
            return job_id, name, expires_at
    raise LinkTampered("the download link is not valid")
