"""Routes that read data: starting a build and its live progress, dataset versions (report sections, rejects,
diffs) and training runs (loss curves, evaluation, comparison).

Thin handlers over ``builds``, ``versions`` and ``runs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cardtune.curate.errors import UserInputError
from cardtune.curate.store import versions as store
from cardtune.studio import runs, versions

if TYPE_CHECKING:
    from cardtune.studio.app import Studio


def routes(studio: Studio) -> list[Route]:
    ws = studio.ws

    async def build_page(request: Request) -> Response:
        return studio.page(request, "build.html", job=studio.builds.current)

    async def build_start(request: Request) -> Response:
        form = await request.form()
        if ws.card_path is None:
            raise UserInputError("no card is open")
        studio.builds.start(ws.card_path, force=form.get("force") == "1")
        return RedirectResponse("/build", status_code=303)

    async def build_progress(request: Request) -> Response:
        return studio.page(request, "_progress.html", job=studio.builds.current)

    async def versions_page(request: Request) -> Response:
        listed = store.scan_versions(ws.output_dir)
        return studio.page(request, "versions.html", listed=listed)

    async def version_page(request: Request) -> Response:
        name, vid = request.path_params["name"], request.path_params["vid"]
        vdir = versions.version_dir(ws.output_dir, name, vid)
        m = store.read_manifest(vdir)
        others = [v for v in store.list_versions(ws.output_dir) if v[1] != vdir]
        return studio.page(
            request,
            "version.html",
            m=m,
            name=name,
            vid=vid,
            sections=versions.report_sections(vdir, m),
            facets=versions.facets(vdir),
            page_=versions.rejects_page(vdir),
            others=others,
        )

    async def rejects(request: Request) -> Response:
        name, vid = request.path_params["name"], request.path_params["vid"]
        vdir = versions.version_dir(ws.output_dir, name, vid)
        q = request.query_params
        page = versions.rejects_page(
            vdir, q.get("filter", ""), q.get("reason", ""), q.get("task", ""), q.get("q", ""), _int(q.get("page"), 1)
        )
        return studio.page(request, "_rejects.html", page_=page, name=name, vid=vid, q=q)

    async def reject_row(request: Request) -> Response:
        name, vid = request.path_params["name"], request.path_params["vid"]
        vdir = versions.version_dir(ws.output_dir, name, vid)
        detail = versions.reject(vdir, int(request.path_params["row"]))
        return studio.page(request, "_reject.html", d=detail)

    async def diff_page(request: Request) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        ma, mb, changes = versions.diff(ws.output_dir, a, b)
        return studio.page(request, "diff.html", ma=ma, mb=mb, changes=changes, a=a, b=b)

    async def runs_page(request: Request) -> Response:
        return studio.page(request, "runs.html", runs=runs.list_runs(ws.runs_dir))

    async def run_page(request: Request) -> Response:
        d = runs.run_dir(ws.runs_dir, request.path_params["name"])
        listed = {r.name: r for r in runs.list_runs(ws.runs_dir)}
        run = listed[d.name]
        history = runs.log_history(d)
        return studio.page(
            request, "run.html", run=run, chart=runs.loss_chart(history), history=history, evaluation=runs.evaluation(d)
        )

    async def compare_page(request: Request) -> Response:
        names = request.query_params.getlist("run")
        if len(names) < 1:
            raise UserInputError("pick at least one evaluated run to compare")
        dirs = [runs.run_dir(ws.runs_dir, n) for n in names]
        return studio.page(request, "compare.html", names=names, rows=runs.compare_rows(dirs))

    return [
        Route("/build", build_page),
        Route("/build/start", build_start, methods=["POST"]),
        Route("/build/progress", build_progress),
        Route("/versions", versions_page),
        Route("/versions/{name}/{vid}", version_page),
        Route("/versions/{name}/{vid}/rejects", rejects),
        Route("/versions/{name}/{vid}/rejects/{row:int}", reject_row),
        Route("/diff", diff_page),
        Route("/runs", runs_page),
        Route("/runs/{name}", run_page),
        Route("/compare", compare_page),
    ]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default
