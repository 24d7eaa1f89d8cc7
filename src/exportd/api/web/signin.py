"""Signing in (an API token for a session cookie), signing out, and `GET /session` (is
this browser signed in?), which the sign-in page asks after a link from another site:
such a navigation carries no SameSite=Strict cookie, the page's own request does."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import CurrentRuntime, get_runtime
from exportd.api.web import sessions
from exportd.api.web.templating import render
from exportd.api.web.users import FormUser, local_path, redirect

router = APIRouter(include_in_schema=False)

NOTICES = {
    "expired": "Your session has ended. Sign in again to continue.",
    "signed_out": "You are signed out.",
}


def sign_in_page(
    request: Request,
    *,
    next_path: str,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    runtime_settings = get_runtime(request).settings
    nonce = sessions.signin_nonce(request)
    response = render(
        request,
        "sign_in.html",
        status=status,
        nonce=nonce,
        next_path=next_path,
        error=error,
        notice=notice,
    )
    sessions.set_signin_cookie(response, request, runtime_settings, nonce)
    return response


@router.get("/sign-in")
async def sign_in_form(
    request: Request,
    runtime: CurrentRuntime,
    next: str | None = None,
    expired: str | None = None,
    signed_out: str | None = None,
) -> Response:
    target = local_path(next)
    secret = sessions.session_secret(request)
    if secret is not None:
        session = await run_in_threadpool(runtime.store.find_session, secret)
        if session is not None:
            return redirect(request, target)
    notice = NOTICES["expired"] if expired else NOTICES["signed_out"] if signed_out else None
    return sign_in_page(request, next_path=target, notice=notice)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    runtime: CurrentRuntime,
    token: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    """Exchange an API token for a session cookie; a wrong token shows the form again."""
    target = local_path(next)
    expected = request.cookies.get(sessions.SIGNIN_COOKIE)
    if sessions.cross_site(request) or not sessions.same_value(expected, csrf):
        error = "The sign-in form had expired. Please enter your token again."
        return sign_in_page(request, next_path=target, status=400, error=error)
    found = None
    if token.strip():
        found = await run_in_threadpool(runtime.store.authenticate, token.strip())
    if found is None:
        error = "That token is not valid. Check it, or ask for a new one."
        return sign_in_page(request, next_path=target, status=401, error=error)
    ttl = timedelta(seconds=runtime.settings.session_ttl_seconds)
    _, secret = await run_in_threadpool(lambda: runtime.store.create_session(found, ttl=ttl))
    response = redirect(request, target)
    sessions.set_session_cookie(response, request, runtime.settings, secret)
    sessions.clear_cookie(response, request, runtime.settings, sessions.SIGNIN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, user: FormUser, runtime: CurrentRuntime) -> Response:
    """End the session (its row is deleted) and drop the cookie."""
    await run_in_threadpool(runtime.store.end_session, user.secret)
    response = redirect(request, "/sign-in?signed_out=1")
    sessions.clear_cookie(response, request, runtime.settings, sessions.SESSION_COOKIE)
    return response


@router.get("/session")
async def session_status(request: Request, runtime: CurrentRuntime) -> JSONResponse:
    """`{"signed_in": true}` while this browser's session is valid."""
    secret = sessions.session_secret(request)
    found = None
    if secret is not None:
        found = await run_in_threadpool(runtime.store.find_session, secret)
    return JSONResponse({"signed_in": found is not None}, headers={"Cache-Control": "no-store"})
