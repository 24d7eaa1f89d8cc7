"""Who is looking at the page: the signed-in user of a request (from the session
cookie), the sign-in redirect when there is none, and the CSRF check of form posts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import Principal, get_runtime
from exportd.api.web import sessions
from exportd.api.web.templating import render

FLASH_COOKIE = "exportd_flash"
FLASHES = {
    "queued": "The export was queued.",
    "cancel_requested": "Cancelling the export: it stops at its next checkpoint.",
    "cancelled": "The export was cancelled.",
    "retried": "The export was queued again.",
    "deleted": "The export and its files were deleted.",
    "gone": "That export no longer exists.",
    "limit": "You have too many active exports: wait for some to finish, then try again.",
    "still_running": "The export is still stopping: try deleting it again in a moment.",
    "invalid_state": "The export changed meanwhile, so nothing was done.",
}


@dataclass(frozen=True)
class WebUser:
    owner: str
    admin: bool
    csrf: str
    secret: str
    actor: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(self.owner, self.admin, self.actor)


class SignInRequired(Exception):
    """No valid session: a page redirects to the sign-in form, a fragment answers 401."""

    def __init__(self, *, page: bool, had_cookie: bool) -> None:
        super().__init__("sign in required")
        self.page, self.had_cookie = page, had_cookie


class FormRejected(Exception):
    """A form post without its session's CSRF token, or sent by another site."""


async def _user(request: Request, *, page: bool) -> WebUser:
    secret = sessions.session_secret(request)
    session = None
    if secret:
        session = await run_in_threadpool(get_runtime(request).store.find_session, secret)
    if session is None or secret is None:
        raise SignInRequired(page=page, had_cookie=secret is not None)
    csrf = sessions.csrf_token(secret)
    return WebUser(session.owner, session.admin, csrf, secret, session.actor)


async def page_user(request: Request) -> WebUser:
    return await _user(request, page=True)


async def fragment_user(request: Request) -> WebUser:
    return await _user(request, page=False)


async def form_user(request: Request) -> WebUser:
    """The user of a form post whose hidden `csrf` field is its session's token."""
    user = await _user(request, page=True)
    form = await request.form()
    given = form.get(sessions.CSRF_FIELD)
    if sessions.cross_site(request) or not sessions.csrf_matches(
        user.secret, given if isinstance(given, str) else None
    ):
        raise FormRejected()
    return user


PageUser = Annotated[WebUser, Depends(page_user)]
FragmentUser = Annotated[WebUser, Depends(fragment_user)]
FormUser = Annotated[WebUser, Depends(form_user)]


def local_path(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site (never another host), else `default`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


def redirect(request: Request, target: str, flash: str | None = None) -> RedirectResponse:
    """303 to `target`; `flash` names the message the next page shows once."""
    response = RedirectResponse(target, status_code=303)
    if flash is not None:
        settings = get_runtime(request).settings
        sessions.set_cookie(response, request, settings, FLASH_COOKIE, flash, 60)
    return response


def take_flash(request: Request, response: Response) -> None:
    """The page shows the last action's message (if any): drop it so it shows once."""
    if FLASH_COOKIE in request.cookies:
        sessions.clear_cookie(response, request, get_runtime(request).settings, FLASH_COOKIE)


def flash_message(request: Request) -> str | None:
    return FLASHES.get(request.cookies.get(FLASH_COOKIE, ""))


def install(app: FastAPI) -> None:
    async def on_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        settings = get_runtime(request).settings
        if not exc.page:
            response: Response = Response(status_code=401)
        else:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = f"/sign-in?next={quote(here, safe='/')}"
            response = RedirectResponse(target + ("&expired=1" if exc.had_cookie else ""), 303)
        if exc.had_cookie:
            sessions.clear_cookie(response, request, settings, sessions.SESSION_COOKIE)
        return response

    async def on_rejected(request: Request, exc: Exception) -> Response:
        return render(request, "rejected.html", status=403)

    app.add_exception_handler(SignInRequired, on_sign_in)
    app.add_exception_handler(FormRejected, on_rejected)
