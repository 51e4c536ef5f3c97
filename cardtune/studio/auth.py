"""The studio's access token: required on every request, as notebooks do.

Owns ``new_token`` (``secrets.token_urlsafe``) and ``TokenGate``, an ASGI middleware: a request carrying the token
in ``?token=`` gets it set as an HttpOnly, SameSite=Strict cookie and is redirected to the same URL without it
(so the token leaves the address bar and history); every other request needs the cookie. Both are compared in
constant time. A request that changes something (any method but GET/HEAD) must also come from the studio's own
origin when the browser says where it comes from. Everything else is answered 403 with one line.
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlencode

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = ("GET", "HEAD")


def new_token() -> str:
    """A random access token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def cookie_name(token: str) -> str:
    """A per-token cookie name: two studios on one host (cookies ignore ports) never overwrite each other's."""
    return "cardtune_studio_" + hashlib.sha256(token.encode()).hexdigest()[:12]


def same(given: str | None, token: str) -> bool:
    """Constant-time comparison (bytes, so non-ASCII input is simply wrong, never an error)."""
    return given is not None and secrets.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


class TokenGate:
    """ASGI middleware enforcing the token on every HTTP request (pages, fragments and static files)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token, self.cookie = app, token, cookie_name(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._check(request)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _check(self, request: Request) -> Response | None:
        given = request.query_params.get("token")
        if given is not None:
            if not same(given, self.token):
                return _refused("wrong access token: open the URL `cardtune studio` printed")
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = URL(str(request.url.replace(query=urlencode(rest))))
            response = RedirectResponse(target.path + (f"?{target.query}" if target.query else ""), status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            return response
        if not same(request.cookies.get(self.cookie), self.token):
            return _refused("access token required: open the URL `cardtune studio` printed (it ends in ?token=...)")
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
                return _refused(f"refused a {request.method} from another origin ({origin})")
        return None


def _refused(message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=403)
