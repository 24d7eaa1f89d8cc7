"""Bearer tokens: every `/v1` route except signed files needs one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from exportd.api.problems import Problem
from exportd.api.validation import is_id, text_reason
from exportd.runtime import Runtime

bearer = HTTPBearer(
    auto_error=False, scheme_name="token", description="an API token (`exportd token create`)"
)
"""Documents the scheme in the OpenAPI; the header is checked by `get_principal`."""

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="exportd"'}


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner to filter by: None (everything) for admins."""
        return None if self.admin else self.owner


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    secret = credentials.credentials.strip() if credentials is not None else ""
    if not secret:
        raise Problem(401, "unauthorized", "a bearer token is required", headers=UNAUTHORIZED)
    token = None
    if text_reason(secret) is None:
        token = await run_in_threadpool(get_runtime(request).store.authenticate, secret)
    if token is None:
        raise Problem(401, "unauthorized", "the token is not valid", headers=UNAUTHORIZED)
    return Principal(token.owner, token.admin)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentRuntime = Annotated[Runtime, Depends(get_runtime)]

NOT_FOUND = {"job_id": "no such export job", "batch_id": "no such batch"}


def known_path_ids(request: Request, principal: CurrentPrincipal) -> None:
    """A job or batch id in the path that the store cannot have made is a 404 at once
    (after authentication), so the store is never asked about it."""
    for name, detail in NOT_FOUND.items():
        value = request.path_params.get(name)
        if value is not None and not is_id(value):
            raise Problem(404, "not_found", detail)


KnownPathIds = Depends(known_path_ids)
