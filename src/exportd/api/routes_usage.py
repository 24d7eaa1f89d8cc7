"""`/v1/usage` (what an owner keeps stored, its quota, its jobs by status) and
`/v1/owners/{owner}/quota` (an admin's per-owner override)."""

from __future__ import annotations

from fastapi import APIRouter

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds
from exportd.api.openapi import problems
from exportd.api.problems import Problem
from exportd.api.schemas import QuotaIn, UsageOut
from exportd.api.validation import OwnerName
from exportd.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["usage"], dependencies=[KnownPathIds])


def usage_out(runtime: Runtime, owner: str) -> UsageOut:
    usage = runtime.store.usage(owner, default_quota=runtime.settings.owner_storage_quota)
    return UsageOut(
        owner=usage.owner,
        bytes_stored=usage.bytes_stored,
        artifacts=usage.artifacts,
        quota_bytes=usage.quota_bytes,
        quota_is_default=usage.quota_is_default,
        downloads=usage.downloads,
        jobs=usage.jobs,
    )


@router.get("/usage", response_model=UsageOut, responses=problems(403, 422))
def get_usage(
    principal: CurrentPrincipal, runtime: CurrentRuntime, owner: OwnerName | None = None
) -> UsageOut:
    """The caller's storage use and quota; an admin may ask for any `owner`."""
    if owner is not None and owner != principal.owner and not principal.admin:
        raise Problem(403, "forbidden", "only an admin token can read another owner's usage")
    return usage_out(runtime, owner or principal.owner)


@router.put("/owners/{owner}/quota", response_model=UsageOut, responses=problems(400, 403, 422))
def set_quota(
    owner: str, body: QuotaIn, principal: CurrentPrincipal, runtime: CurrentRuntime
) -> UsageOut:
    """Give an owner a storage quota of its own (admin tokens only); `null` returns it to
    the server's default (`EXPORTD_OWNER_STORAGE_QUOTA`)."""
    if not principal.admin:
        raise Problem(403, "forbidden", "only an admin token can set quotas")
    runtime.store.set_quota(owner, body.storage_quota_bytes)
    return usage_out(runtime, owner)
