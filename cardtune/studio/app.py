"""The studio's web app: ``create_app(workspace, token)`` → a Starlette app of server-rendered pages and htmx fragments.

Owns the wiring only: the token gate, the page environment (Jinja HTML files in ``pages/``, autoescaped), static
assets (``static/``, with the report's stylesheet from ``cardtune.curate.reporting``: nothing is loaded from the
network), and turning errors into pages: ``UserInputError`` / ``Refused`` as their lines (400), ``Conflict`` as 409,
anything else as one line (500) — never a traceback in the browser. The routes live in ``routes_edit.py`` (card,
templates, mixture) and ``routes_data.py`` (build, versions, runs).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

import cardtune
from cardtune.curate.errors import UserInputError
from cardtune.studio.auth import TokenGate
from cardtune.studio.builds import Builds
from cardtune.studio.workspace import Conflict, Refused, Workspace

NAV = (("/", "Card"), ("/templates", "Templates"), ("/mixture", "Mixture"), ("/build", "Build"),
       ("/versions", "Versions"), ("/runs", "Runs"))  # fmt: skip
FIELD_CLASSES = 6
# Pages may load nothing but the studio's own files (no network), and are never framed by another site.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts say `Origin: null`
    "X-Content-Type-Options": "nosniff",
}
STATIC = {
    "htmx.min.js": "text/javascript",
    "htmx.LICENSE": "text/plain",
    "studio.js": "text/javascript",
    "studio.css": "text/css",
}


class PlanQueue:
    """Dry runs one at a time; one that a newer request superseded while it waited is skipped (a dragged slider
    asks for many plans; only the last one is shown)."""

    def __init__(self) -> None:
        self._count = threading.Lock()
        self.run = threading.Lock()
        self.latest = 0

    def ticket(self) -> int:
        with self._count:
            self.latest += 1
            return self.latest


@dataclass
class Studio:
    """What every route needs: the workspace, the build runner and the page environment."""

    ws: Workspace
    builds: Builds = field(default_factory=Builds)
    env: jinja2.Environment = field(init=False)
    plans: PlanQueue = field(default_factory=PlanQueue)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("cardtune.studio", "pages"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(nav=NAV, version=cardtune.__version__, field_classes=FIELD_CLASSES)

    def page(self, request: Request, name: str, /, status: int = 200, **context: Any) -> HTMLResponse:
        """Render ``pages/<name>`` with the card's header (name, path, whether it loads)."""
        if name == "error.html" and _is_fragment(request):
            name = "_error.html"
        context.setdefault("opened", self.ws.open_card())
        text = self.env.get_template(name).render(
            request=request, path=request.url.path, ws=self.ws, fragment=_is_fragment(request), **context
        )
        return HTMLResponse(text, status_code=status, headers=HEADERS)


def _is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") != "true"


def _report_css() -> str:
    return resources.files("cardtune.curate.reporting").joinpath("assets/report.css").read_text(encoding="utf-8")


def create_app(ws: Workspace, token: str) -> Any:
    """The studio as an ASGI app (wrapped in the token gate)."""
    from cardtune.studio import routes_data, routes_edit

    studio = Studio(ws)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "report.css":
            return Response(_report_css(), media_type="text/css")
        if name not in STATIC:  # a fixed list: nothing else under the package is ever served
            return Response("not found\n", status_code=404, media_type="text/plain")
        data = resources.files("cardtune.studio").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    async def user_error(request: Request, exc: Exception) -> Response:
        status = 409 if isinstance(exc, Conflict) else 400
        lines = [str(i) for i in exc.issues] if isinstance(exc, UserInputError) else [str(exc)]
        return studio.page(request, "error.html", status=status, lines=lines, conflict=isinstance(exc, Conflict))

    async def internal(request: Request, exc: Exception) -> Response:
        lines = [f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]]
        return studio.page(request, "error.html", status=500, lines=lines, conflict=False)

    routes = [
        *routes_edit.routes(studio),
        *routes_data.routes(studio),
        Route("/static/{name}", static),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            UserInputError: user_error,
            Refused: user_error,
            Conflict: user_error,
            Exception: internal,
        },
    )
    app.state.studio = studio
    return TokenGate(app, token)
