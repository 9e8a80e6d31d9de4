"""Who is looking at the monitor: login, logout, login links, the session credential that
`api.access` falls back on for /ui routes, the CSRF check, and the monitor's error pages.

Every /ui route is authenticated by `api.access.authenticate` like the rest of the API, with one
more place to find the token: the session cookie (`session`), or on the login routes the
submitted form or a login link's code. A bearer header, when sent (a proxy in front, a script),
wins and needs no CSRF token: a browser never adds one by itself. An unauthenticated request for
any /ui page is answered 401 with the login form, which posts back to that page's address.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WResponse

from skypanda.api.errors import validation_message
from skypanda.api.monitor.session import COOKIE, LOGIN_COOKIE, LOGIN_FORM_S, SESSION_S, Sessions
from skypanda.domain.errors import Forbidden, SkypandaError, Unauthorized

log = logging.getLogger(__name__)

HOME = "/ui/tasks"
STYLE = (resources.files("skypanda.api.monitor") / "static" / "monitor.css").read_text()
JSON_ENDPOINTS = frozenset(
    {"monitor.live_tasks", "monitor.live_job", "monitor.live_chart", "monitor.login_link"}
)
"""Monitor routes that answer JSON (errors too): the pages' live updates and `skypanda monitor`."""


def finder(sessions: Sessions) -> Any:
    """The credential `api.access.authenticate` uses when no bearer header came: for /ui
    routes, the login form's token, a login link's code, or the session cookie."""

    def find() -> str | None:
        if request.blueprint != "monitor":
            return None
        if request.endpoint == "monitor.login":
            if request.method == "POST":
                sessions.check_login_nonce(
                    request.form.get("nonce", ""), request.cookies.get(LOGIN_COOKIE)
                )
                token = request.form.get("token", "").strip()
                if not token:
                    raise Unauthorized("enter your skypanda token")
                g.monitor_login = token
                return token
            code = request.args.get("code")
            if code:
                g.monitor_login = sessions.redeem(code)
                return str(g.monitor_login)
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        g.monitor_session = session
        return session.token

    return find


def _secure() -> bool:
    return request.scheme == "https"


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this monitor only (never another site)."""
    if not target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/") or "\\" in target:
        return HOME
    if parts.path in ("/ui/login", "/ui/logout"):
        return HOME
    return parts.path + (f"?{parts.query}" if parts.query else "")


def check_csrf() -> None:
    """A POST made with the session cookie must carry the session's CSRF token.

    Raises:
        Forbidden: it does not (a stale page, or a form on another site).
    """
    session = g.get("monitor_session")
    if request.method != "POST" or session is None:
        return
    if request.form.get("csrf") != session.csrf:
        raise Forbidden("this form is stale or not from the monitor (CSRF check): reload the page")


def login_page(sessions: Sessions, message: str, status: int) -> Response:
    """The login form (HTTP `status`), posting back to the page asked for."""
    nonce, cookie = sessions.login_nonce()
    target = request.full_path.rstrip("?") if request.method == "GET" else request.path
    if request.endpoint == "monitor.login":
        target = request.values.get("next") or HOME
    html = render_template(
        "monitor/login.html", message=message, nonce=nonce, next=safe_next(target),
        inline_css=STYLE,  # the stylesheet's route wants a login too
    )  # fmt: skip
    response = Response(html, status=status, mimetype="text/html")
    response.set_cookie(
        LOGIN_COOKIE, cookie, max_age=LOGIN_FORM_S, path="/ui/login", httponly=True,
        secure=_secure(), samesite="Strict",
    )  # fmt: skip
    if request.cookies.get(COOKIE):  # a session that no longer works: forget it
        response.delete_cookie(COOKIE, path="/ui", secure=_secure(), samesite="Strict")
    return response


def routes(bp: Blueprint, sessions: Sessions) -> None:
    @bp.before_request
    def _csrf() -> None:
        check_csrf()

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> WResponse:
        """Start a session with the token the form sent or a login link's code; then go where
        the user was going. (A caller with a bearer header needs no session: it is sent on.)"""
        token = g.get("monitor_login")
        target = safe_next(request.values.get("next"))
        response = redirect(target, code=303)
        if token:
            response.set_cookie(
                COOKIE, sessions.start(token, g.principal.name), max_age=SESSION_S, path="/ui",
                httponly=True, secure=_secure(), samesite="Strict",
            )  # fmt: skip
            response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    @bp.post("/logout")
    def logout() -> WResponse:
        response = redirect("/ui/login", code=303)
        response.delete_cookie(COOKIE, path="/ui", secure=_secure(), samesite="Strict")
        return response

    @bp.post("/link")
    def login_link() -> tuple[Response, int]:
        """A one-time login link for the caller (`skypanda monitor`): bearer only, so a page
        cannot mint links from a session."""
        token = _bearer()
        if not token:
            raise Forbidden("a login link is made for a bearer token (skypanda monitor)")
        code = sessions.link_code(token)
        url = request.host_url.rstrip("/") + "/ui/login?code=" + code
        return jsonify({"url": url, "expires_in": 120, "name": g.principal.name}), 201


def _bearer() -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() or None if scheme.lower() == "bearer" else None


def error_pages(bp: Blueprint, sessions: Sessions) -> None:
    """Errors of /ui routes as pages (JSON for the live routes), each naming the problem."""

    def page(status: int, title: str, message: str) -> tuple[Response | str, int]:
        if request.endpoint in JSON_ENDPOINTS:
            return jsonify({"error": title, "message": message}), status
        if status == 401:
            return login_page(sessions, message, 401), 401
        html = render_template("monitor/error.html", status=status, title=title, message=message)
        return html, status

    @bp.errorhandler(SkypandaError)
    def _skypanda(e: SkypandaError) -> tuple[Response | str, int]:
        return page(e.http_status, type(e).__name__, e.message)

    @bp.errorhandler(ValidationError)
    def _validation(e: ValidationError) -> tuple[Response | str, int]:
        return page(422, "InvalidInput", validation_message(e))

    @bp.errorhandler(HTTPException)
    def _http(e: HTTPException) -> tuple[Response | str, int]:
        return page(e.code or 500, type(e).__name__, e.description or str(e))

    @bp.errorhandler(Exception)
    def _crash(e: Exception) -> tuple[Response | str, int]:
        log.exception("unhandled error in the monitor")
        return page(500, "InternalError", f"internal error ({type(e).__name__}); see server log")
