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
from cardtune.studio.threads import Form, threaded

if TYPE_CHECKING:
    from cardtune.studio.app import Studio


def routes(studio: Studio) -> list[Route]:
    ws = studio.ws

    def build_page(request: Request, form: Form) -> Response:
        return studio.page(request, "build.html", job=studio.builds.current)

    def build_start(request: Request, form: Form) -> Response:
        if ws.card_path is None:
            raise UserInputError("no card is open")
        studio.builds.start(ws.card_path, force=form.get("force") == "1")
        return RedirectResponse("/build", status_code=303)

    def build_progress(request: Request, form: Form) -> Response:
        return studio.page(request, "_progress.html", job=studio.builds.current)

    def versions_page(request: Request, form: Form) -> Response:
        listed = store.scan_versions(ws.output_dir)
        return studio.page(request, "versions.html", listed=listed)

    def version_page(request: Request, form: Form) -> Response:
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

    def rejects(request: Request, form: Form) -> Response:
        name, vid = request.path_params["name"], request.path_params["vid"]
        vdir = versions.version_dir(ws.output_dir, name, vid)
        q = request.query_params
        page = versions.rejects_page(
            vdir, q.get("filter", ""), q.get("reason", ""), q.get("task", ""), q.get("q", ""), _int(q.get("page"), 1)
        )
        return studio.page(request, "_rejects.html", page_=page, name=name, vid=vid, q=q)

    def reject_row(request: Request, form: Form) -> Response:
        name, vid = request.path_params["name"], request.path_params["vid"]
        vdir = versions.version_dir(ws.output_dir, name, vid)
        detail = versions.reject(vdir, int(request.path_params["row"]))
        return studio.page(request, "_reject.html", d=detail)

    def diff_page(request: Request, form: Form) -> Response:
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        ma, mb, changes = versions.diff(ws.output_dir, a, b)
        return studio.page(request, "diff.html", ma=ma, mb=mb, changes=changes, a=a, b=b)

    def runs_page(request: Request, form: Form) -> Response:
        return studio.page(request, "runs.html", runs=runs.list_runs(ws.runs_dir))

    def run_page(request: Request, form: Form) -> Response:
        d = runs.run_dir(ws.runs_dir, request.path_params["name"])
        listed = {r.name: r for r in runs.list_runs(ws.runs_dir)}
        run = listed[d.name]
        history = runs.log_history(d)
        return studio.page(
            request, "run.html", run=run, chart=runs.loss_chart(history), history=history, evaluation=runs.evaluation(d)
        )

    def compare_page(request: Request, form: Form) -> Response:
        names = request.query_params.getlist("run")
        if len(names) < 1:
            raise UserInputError("pick at least one evaluated run to compare")
        dirs = [runs.run_dir(ws.runs_dir, n) for n in names]
        return studio.page(request, "compare.html", names=names, rows=runs.compare_rows(dirs))

    return [
        Route("/build", threaded(build_page)),
        Route("/build/start", threaded(build_start), methods=["POST"]),
        Route("/build/progress", threaded(build_progress)),
        Route("/versions", threaded(versions_page)),
        Route("/versions/{name}/{vid}", threaded(version_page)),
        Route("/versions/{name}/{vid}/rejects", threaded(rejects)),
        Route("/versions/{name}/{vid}/rejects/{row:int}", threaded(reject_row)),
        Route("/diff", threaded(diff_page)),
        Route("/runs", threaded(runs_page)),
        Route("/runs/{name}", threaded(run_page)),
        Route("/compare", threaded(compare_page)),
    ]


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default
