"""The boto3 side of `S3Storage`: where the bucket is (`S3Location`), how to reach it
(`S3Options`, `make_client`), and what its errors mean to exportd (`storage_error`).

boto3 is imported when a client is made, never at import time: a worker on local storage
does not load it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlparse

from exportd.errors import (
    ArtifactExists,
    ArtifactNotFound,
    ConfigurationError,
    StorageAccessDenied,
    StorageBucketMissing,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
BUCKET_MISSING = frozenset({"NoSuchBucket"})
DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "403",
    }
)
EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
BUSY = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
MAX_POOL = 32
AddressingStyle = Literal["auto", "path", "virtual"]


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/prefix`: objects are named `{prefix}/{key}`."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigurationError(f"not an S3 storage URL: {url!r} (use s3://bucket/prefix)")
        if parsed.query or parsed.fragment:
            raise ConfigurationError(f"an S3 storage URL takes no ?query or #fragment: {url!r}")
        prefix = unquote(parsed.path).strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ConfigurationError(f"invalid prefix in the S3 storage URL {url!r}")
        return cls(parsed.netloc, prefix)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def root(self) -> str:
        """What every object name of this storage starts with ('' or `prefix/`)."""
        return f"{self.prefix}/" if self.prefix else ""

    def object_name(self, key: str) -> str:
        return self.root + key

    def key_of(self, name: str) -> str:
        return name[len(self.root) :]


@dataclass(frozen=True)
class S3Options:
    """How to reach the bucket; None leaves a value to boto3's own configuration
    (`AWS_*` variables, `~/.aws`, instance roles)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing_style: AddressingStyle | None = None
    part_size: int = 16 * 2**20


def make_client(options: S3Options) -> S3Client:
    """A thread-safe S3 client set up for S3-compatible servers as well as AWS: SigV4,
    checksums only where an operation requires them (many servers reject the newer
    default ones), path-style addressing when an endpoint is given, standard retries."""
    import boto3
    from botocore.config import Config

    style: AddressingStyle = options.addressing_style or (
        "path" if options.endpoint_url else "auto"
    )
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=MAX_POOL,
        connect_timeout=10,
        read_timeout=120,
        tcp_keepalive=True,
    )
    region = options.region or ("us-east-1" if options.endpoint_url else None)
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=options.endpoint_url,
        region_name=region,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        config=config,
    )


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore `ClientError` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def storage_error(exc: Exception, doing: str) -> StorageError:
    """A botocore (or socket) error as the exportd storage error it means; `doing` says
    what failed, e.g. "publish s3://bucket/key"."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, ClientError):
        return _client_error(exc, doing)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageAccessDenied(f"cannot {doing}: {exc} (set EXPORTD_S3_ACCESS_KEY_ID …)")
    if isinstance(exc, HTTPClientError | ConnectionError | TimeoutError):
        return StorageUnavailable(f"cannot {doing}: {exc}")
    return StorageError(f"cannot {doing}: {type(exc).__name__}: {exc}")


def _client_error(exc: Exception, doing: str) -> StorageError:
    code, status = error_code(exc), _status(exc)
    message = getattr(exc, "response", {}).get("Error", {}).get("Message") or ""
    text = f"cannot {doing}: {code or status}" + (f" ({message})" if message else "")
    if code in BUCKET_MISSING:
        return StorageBucketMissing(text)
    if code in NOT_FOUND:
        return ArtifactNotFound(text)
    if code in DENIED or status == 403:
        return StorageAccessDenied(text)
    if code in EXISTS or status == 412:
        return ArtifactExists(text)
    if code in BUSY or status == 429 or status >= 500:
        return StorageUnavailable(text)
    return StorageError(text)
