"""Who is asking: every `/v1` route except signed files needs a bearer API token, or the
web page's session cookie (see `exportd.api.web.sessions`). A request with an
`Authorization` header is judged by it alone, exactly as without cookies. A cookie
authorises safe methods (GET, HEAD) by itself; any other method also needs the
session's CSRF token in `X-CSRF-Token`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from exportd.api.problems import Problem
from exportd.api.validation import is_id, text_reason
from exportd.api.web import sessions
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
    actor: str | None = None
    """Who is acting, for history and audit: the token's `owner/name` (or id)."""

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
    """The caller: a bearer token's owner; without an Authorization header, the owner of
    the web session's cookie."""
    if "authorization" not in request.headers and sessions.session_secret(request):
        return await cookie_principal(request)
    secret = credentials.credentials.strip() if credentials is not None else ""
    if not secret:
        raise Problem(401, "unauthorized", "a bearer token is required", headers=UNAUTHORIZED)
    token = None
    if text_reason(secret) is None:
        store = get_runtime(request).store
        known, token = store.cached_token(secret)
        if not known:
            token = await run_in_threadpool(store.authenticate, secret)
    if token is None:
        raise Problem(401, "unauthorized", "the token is not valid", headers=UNAUTHORIZED)
    return Principal(token.owner, token.admin, f"{token.owner}/{token.name or token.id}")


async def cookie_principal(request: Request) -> Principal:
    """The owner of the request's session cookie; 401 when it has ended, 403 when a
    state-changing request lacks the session's CSRF token."""
    secret = sessions.session_secret(request) or ""
    session = await run_in_threadpool(get_runtime(request).store.find_session, secret)
    if session is None:
        detail = "the session has ended; sign in again"
        raise Problem(401, "unauthorized", detail, headers=UNAUTHORIZED)
    if request.method not in sessions.SAFE_METHODS and not sessions.csrf_matches(
        secret, request.headers.get(sessions.CSRF_HEADER)
    ):
        detail = "a request made with the session cookie needs its X-CSRF-Token header"
        raise Problem(403, "csrf_failed", detail)
    return Principal(session.owner, session.admin, session.actor)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def current_runtime(request: Request) -> Runtime:
    """`get_runtime` as a dependency. Dependencies that do no I/O are `async`: FastAPI
    runs a plain `def` dependency in the thread pool, a hop per request each."""
    return get_runtime(request)


CurrentRuntime = Annotated[Runtime, Depends(current_runtime)]

NOT_FOUND = {"job_id": "no such export job", "batch_id": "no such batch"}


async def known_path_ids(request: Request, principal: CurrentPrincipal) -> None:
    """A job or batch id in the path that the store cannot have made, or any path value
    no store can hold (NUL, an unpaired surrogate), is a 404 at once (after
    authentication), so the store is never asked about it."""
    for name, detail in NOT_FOUND.items():
        value = request.path_params.get(name)
        if value is not None and not is_id(value):
            raise Problem(404, "not_found", detail)
    for value in request.path_params.values():
        if isinstance(value, str) and text_reason(value) is not None:
            raise Problem(404, "not_found", "no such resource")


KnownPathIds = Depends(known_path_ids)
