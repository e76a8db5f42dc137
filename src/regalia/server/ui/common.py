"""What every page shares: templates, the logged-in user, checked forms,
rendering, and the redirect after a form (with its error, if any)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from regalia.core.roles import RegistryRole
from regalia.errors import InvalidRequest, RegaliaError, Unauthenticated
from regalia.server.ui.session import COOKIE, FormTokens, clear_cookie
from regalia.service import Actor, Service

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

T = TypeVar("T")
FLASH = "regalia_flash"  # the error of the last form, shown once


@functools.cache
def templates() -> Jinja2Templates:
    """The page templates, loaded on the first page (Jinja2 stays out of the
    server's start-up: the REST API does not need it)."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class LoginNeeded(Exception):
    """No valid session: the page sends the browser to the login form."""


def tokens_of(request: Request) -> FormTokens:
    tokens: FormTokens | None = getattr(request.app.state, "form_tokens", None)
    if tokens is None:
        svc: Service = request.app.state.service
        tokens = request.app.state.form_tokens = FormTokens(svc.secret_box.key)
    return tokens


async def page_actor(request: Request) -> Actor:
    """The logged-in user, or :class:`LoginNeeded` (no cookie, or its session
    ended: logged out, expired, or the key was revoked)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        raise LoginNeeded()
    try:
        actor: Actor = await request.app.state.auth.actor_of_session(token)
    except Unauthenticated:
        raise LoginNeeded() from None
    return actor


async def checked_form(request: Request) -> dict[str, Any]:
    """The posted form, after its CSRF token was checked."""
    form = await request.form()
    token = form.get("csrf")
    if not tokens_of(request).csrf_ok(
        request.cookies.get(COOKIE), token if isinstance(token, str) else None
    ):
        raise InvalidRequest("the form expired or did not come from this site; reload the page")
    return {k: v for k, v in form.items()}


PageActor = Annotated[Actor, Depends(page_actor)]


def render(request: Request, template: str, actor: Actor | None, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE)
    csrf = tokens_of(request).csrf_token(cookie) if cookie else ""
    error = _flash(request.cookies.get(FLASH))
    shared = {"actor": actor, "csrf": csrf, "error": error}
    response = templates().TemplateResponse(request, template, {**shared, **context})
    if FLASH in request.cookies:
        clear_cookie(response, request, FLASH)
    return response


def apply(
    back_to: str, change: Callable[[], T], then: Callable[[T], str] | None = None
) -> RedirectResponse:
    """Make a form's change, then redirect: to ``then(result)`` (default
    ``back_to``), or on a refusal back to ``back_to`` with the reason."""
    try:
        result = change()
    except RegaliaError as exc:
        return back(back_to, exc.message)
    return back(then(result) if then else back_to)


def _flash(cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        return base64.urlsafe_b64decode(cookie.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def service_of(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def back(url: str, error: str | None = None) -> RedirectResponse:
    """Where a form sends the browser afterwards (Post/Redirect/Get); an error
    rides along in a short-lived cookie (not the URL, where anyone could write
    a message that the page would show)."""
    response = RedirectResponse(url, status_code=303)
    if error:
        text = base64.urlsafe_b64encode(error[:500].encode()).decode()
        response.set_cookie(FLASH, text, max_age=60, httponly=True, samesite="lax")
    return response


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def at_least(role: str | None, wanted: RegistryRole) -> bool:
    """Whether a registry role (the caller's) includes ``wanted``'s rights."""
    if role is None:
        return False
    return RegistryRole.parse(role).rank >= wanted.rank


TITLES = {400: "That did not work", 403: "Not allowed", 404: "Not found", 409: "Conflict"}


def wants_page(request: Request) -> bool:
    """A browser asking for a page (not the REST API, not a program)."""
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    response = templates().TemplateResponse(
        request,
        "error.html",
        {"actor": None, "csrf": "", "error": None, "status": status,
         "title": TITLES.get(status, "Something went wrong"), "message": message},
        status_code=status,
    )  # fmt: skip
    return response
