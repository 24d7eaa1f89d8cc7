"""Bearer tokens: every `/v1` route except signed files needs one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from exportd.api.problems import Problem
from exportd.runtime import Runtime


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool
    actor: str | None = None
    """Who is acting, for history and audit: the token's `owner/name` (or id)."""

    @property
    def scope(self) -> str | None:
        """The owner to filter by: None (everything) for admins."""
        return None if self.admin else self.owner


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    unauthorized = {"WWW-Authenticate": 'Bearer realm="exportd"'}
    if scheme.lower() != "bearer" or not secret.strip():
        raise Problem(401, "unauthorized", "a bearer token is required", headers=unauthorized)
    token = await run_in_threadpool(get_runtime(request).store.authenticate, secret.strip())
    if token is None:
        raise Problem(401, "unauthorized", "the token is not valid", headers=unauthorized)
    return Principal(token.owner, token.admin, f"{token.owner}/{token.name or token.id}")


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentRuntime = Annotated[Runtime, Depends(get_runtime)]
