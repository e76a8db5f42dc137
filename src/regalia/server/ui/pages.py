"""Pages of the web UI: log in and out, the home page (registries).

Each page acts as the logged-in user through the same service calls as the
REST API, so what a role may not do is refused here too; the templates only
leave out what would be refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from regalia.core.roles import OrgRole
from regalia.errors import InvalidRequest, Unauthenticated
from regalia.server.ui.session import COOKIE, SessionSealer, clear_session, set_session
from regalia.service import Actor, Service

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


class LoginNeeded(Exception):
    """No valid session: the page sends the browser to the login form."""


def sealer_of(request: Request) -> SessionSealer:
    sealer: SessionSealer | None = getattr(request.app.state, "sessions", None)
    if sealer is None:
        svc: Service = request.app.state.service
        sealer = request.app.state.sessions = SessionSealer(svc.secret_box.key)
    return sealer


async def page_actor(request: Request) -> Actor:
    """The logged-in user, or :class:`LoginNeeded`."""
    key = sealer_of(request).open(request.cookies.get(COOKIE))
    if key is None:
        raise LoginNeeded()
    try:
        actor: Actor = await request.app.state.auth.actor_of_key(key)
    except Unauthenticated:  # the key was revoked
        raise LoginNeeded() from None
    return actor


async def checked_form(request: Request) -> dict[str, Any]:
    """The posted form, after its CSRF token was checked."""
    form = await request.form()
    token = form.get("csrf")
    if not sealer_of(request).csrf_ok(
        request.cookies.get(COOKIE), token if isinstance(token, str) else None
    ):
        raise InvalidRequest("the form expired or did not come from this site; reload the page")
    return {k: v for k, v in form.items()}


PageActor = Annotated[Actor, Depends(page_actor)]


def render(request: Request, template: str, actor: Actor | None, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(COOKIE)
    csrf = sealer_of(request).csrf_token(cookie) if cookie else ""
    return TEMPLATES.TemplateResponse(request, template, {"actor": actor, "csrf": csrf, **context})


@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=next, error=None)


@router.post("/login")
async def login(
    request: Request, api_key: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    try:
        await request.app.state.auth.actor_of_key(api_key.strip())
    except Unauthenticated:
        refused = render(request, "login.html", None, next=next,
                         error="That API key is not valid (or was revoked).")  # fmt: skip
        refused.status_code = 401
        return refused
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, sealer_of(request).seal(api_key.strip()))
    return response


@router.post("/logout")
async def logout(
    request: Request, form: Annotated[dict[str, Any], Depends(checked_form)]
) -> Response:
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response


@router.get("/")
def home(request: Request, actor: PageActor) -> HTMLResponse:
    svc: Service = request.app.state.service
    registries = svc.list_registries(actor)
    can_create = actor.org_role in (OrgRole.ADMIN, OrgRole.MEMBER)
    return render(request, "home.html", actor, registries=registries, can_create=can_create)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
