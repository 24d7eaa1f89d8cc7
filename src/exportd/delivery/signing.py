"""Standard Webhooks signing (https://www.standardwebhooks.com).

A secret is `whsec_` followed by the base64 of its random bytes; the HMAC key is those
bytes. A message is signed as `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`;
the `webhook-signature` header carries one signature per valid secret, separated by
spaces, so that after a rotation receivers holding either secret can verify.

One-off webhook URLs (a job's `notify.webhook_url`) have no endpoint row and so no
secret of their own: they are signed with the owner's *notify secret*, derived from the
server's link-signing key with HMAC, stable for as long as that key is."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def notify_secret(link_key: bytes, owner: str) -> str:
    """The owner's secret for one-off webhook URLs."""
    derived = hmac.new(link_key, b"exportd notify secret v1\x00" + owner.encode(), hashlib.sha256)
    return PREFIX + base64.b64encode(derived.digest()).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secrets_: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, signed with every secret given."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
    }
