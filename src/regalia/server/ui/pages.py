"""Pages of the web UI: log in and out, the home page (registries).

Each page acts as the logged-in user through the same service calls as the
REST API, so what a role may not do is refused here too; the templates only
leave out what would be refused.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from regalia.core.roles import OrgRole
from regalia.errors import Unauthenticated
from regalia.server.ui.common import (
    PageActor,
    apply,
    checked_form,
    render,
    service_of,
)
from regalia.server.ui.session import COOKIE, clear_cookie, clear_session, set_cookie, set_session

router = APIRouter(include_in_schema=False)


LOGIN_NONCE = "regalia_login"  # the login form's CSRF token (no session yet): double submit


def _login_page(request: Request, next: str, error: str | None, status: int = 200) -> Response:
    nonce = secrets.token_hex(16)
    page = render(request, "login.html", None, next=next, error=error, nonce=nonce)
    page.status_code = status
    set_cookie(page, request, LOGIN_NONCE, nonce, max_age=3600, samesite="strict")
    return page


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return _login_page(request, next, None)


@router.post("/login")
async def login(
    request: Request,
    api_key: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
    nonce: Annotated[str, Form()] = "",
) -> Response:
    cookie = request.cookies.get(LOGIN_NONCE, "")
    if not cookie or not hmac.compare_digest(cookie, nonce):
        return _login_page(request, next, "The form expired; log in again.", 400)
    svc = service_of(request)
    try:
        token, expires = await run_in_threadpool(svc.open_web_session, api_key.strip())
    except Unauthenticated as exc:
        # The API's words (revoked when, another server's tag, unknown, malformed).
        return _login_page(request, next, f"That API key was refused: {exc.message}.", 401)
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    set_session(response, request, token, round((expires - svc.now()).total_seconds()))
    clear_cookie(response, request, LOGIN_NONCE)
    return response


@router.post("/logout")
async def logout(
    request: Request, form: Annotated[dict[str, Any], Depends(checked_form)]
) -> Response:
    token = request.cookies.get(COOKIE)
    if token:  # the form's token was checked: this browser holds this session
        await run_in_threadpool(service_of(request).close_web_session, token)
    response = RedirectResponse("/login", status_code=303)
    clear_session(response, request)
    return response


@router.get("/")
def home(request: Request, actor: PageActor) -> HTMLResponse:
    registries = service_of(request).list_registries(actor)
    can_create = actor.org_role in (OrgRole.ADMIN, OrgRole.MEMBER)
    return render(request, "home.html", actor, registries=registries, can_create=can_create)


@router.get("/search")
def search(request: Request, actor: PageActor, q: str = "") -> HTMLResponse:
    results = service_of(request).search(actor, q[:200]) if q.strip() else None
    return render(request, "search.html", actor, q=q, results=results)


@router.post("/registries")
def create_registry(
    request: Request, actor: PageActor, form: Annotated[dict[str, Any], Depends(checked_form)]
) -> Response:
    types = [t.strip() for t in str(form.get("types", "")).split(",") if t.strip()]
    return apply(
        "/",
        lambda: service_of(request).create_registry(
            actor,
            str(form.get("name", "")).strip(),
            visibility=str(form.get("visibility", "organization")),
            description=str(form.get("description", "")).strip(),
            artifact_types=types or None,
        ),
        then=lambda view: f"/registries/{quote(view.name, safe='')}",
    )
