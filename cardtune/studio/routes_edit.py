"""Routes that edit files: the card (text, live validation, save), the template workbench and the mixture.

Thin handlers: parse the form, call ``workbench`` / ``mixture`` / ``Workspace``, render a page or a fragment.
Every save carries the hash of the file as the page loaded it; ``Workspace.save`` refuses a stale one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cardtune.curate.errors import Issue, UserInputError
from cardtune.studio import mixture, workbench
from cardtune.studio.threads import Form, threaded
from cardtune.studio.workspace import Opened, Refused

if TYPE_CHECKING:
    from cardtune.curate.card.schema import Card
    from cardtune.studio.app import Studio


def _card_problems(issues: list[Issue], file: str) -> list[workbench.Problem]:
    return [workbench.Problem(i.line if i.file == file else 0, workbench._short(i, file)) for i in issues]


def _check_card(text: str, path: str) -> list[workbench.Problem]:
    """Every problem ``cardtune validate`` reports for this (unsaved) card text."""
    from cardtune.curate.card.load import card_from_located
    from cardtune.curate.card.yamlsrc import load_located

    try:
        card = card_from_located(load_located(text, path), Path(path))
    except UserInputError as exc:
        return _card_problems(exc.issues, path)
    from cardtune.curate.inputs import resolve_inputs
    from cardtune.curate.templating.card_templates import template_issues

    issues: list[Issue] = []
    inputs = resolve_inputs(card, issues)
    issues.extend(template_issues(card, inputs)[1])
    return _card_problems(issues, path)


def routes(studio: Studio) -> list[Route]:
    ws = studio.ws

    def home(request: Request, form: Form) -> Response:
        opened = ws.open_card()
        problems = _card_problems(opened.issues, str(ws.card_path)) if opened.card is None else []
        if opened.card is not None:
            problems = _check_card(opened.text, str(ws.card_path))
        cards = [ws.relative(p) for p in ws.cards()] if ws.card_path is None else []
        return studio.page(request, "card.html", problems=problems, cards=cards)

    def open_card(request: Request, form: Form) -> Response:
        path = ws.writable(str(form.get("card", "")))
        if not path.is_file():
            raise Refused(f"{ws.relative(path)}: no such card file")
        ws.card_path = path
        return RedirectResponse("/", status_code=303)

    def card_check(request: Request, form: Form) -> Response:
        text = str(form.get("text", ""))
        problems = _check_card(text, str(ws.card_path))
        return studio.page(request, "_problems.html", problems=problems, text=text, ok="card is valid")

    def card_save(request: Request, form: Form) -> Response:
        if ws.card_path is None:
            raise Refused("no card is open")
        text, expected = str(form.get("text", "")), str(form.get("hash", ""))
        _, new_hash = ws.save(ws.card_path, text, expected)
        return _saved(studio, request, ws.relative(ws.card_path), new_hash)

    def templates_page(request: Request, form: Form) -> Response:
        opened = ws.open_card()
        card = opened.card
        if card is None:
            return studio.page(
                request, "templates.html", tasks={}, issues=opened.issues, task=None, entry=None, broken=[]
            )
        by_task, issues = workbench.task_templates(ws, card)
        q = request.query_params
        task_name = q.get("task") or (card.tasks[0].name if card.tasks else "")
        task = next((t for t in card.tasks if t.name == task_name), None)
        if task is None:
            raise UserInputError(f"no task {task_name!r} in the card")
        entries = by_task.get(task.name, [])
        entry = next((e for e in entries if e.id == q.get("template")), entries[0] if entries else None)
        broken = sorted({ws.relative(Path(i.file)) for i in issues if i.file and workbench.editable(ws, Path(i.file))})
        ctx: dict[str, Any] = {"tasks": by_task, "issues": issues, "task": task, "entry": entry, "broken": broken}
        if q.get("file"):  # a file by name: e.g. one that does not load, so no template of it is listed
            path = ws.writable(q["file"])
            text, h = ws.read(path)
            ctx.update(file=ws.relative(path), text=text, hash=h, editable=True, template_id=q.get("template", ""))
            ctx.update(new=False, entry=None)
        elif q.get("new") or entry is None:
            try:
                rows = workbench.source_rows(card, task)
                columns = list(rows[0]) if rows else []
            except UserInputError:
                columns = []
            rel, text, h = workbench.new_file_for(ws, card, task)
            text = workbench.new_template(text, workbench.family_for(task), columns)
            new_id = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("- id:")]
            ctx.update(file=rel, text=text, hash=h, editable=True, template_id=new_id[-1] if new_id else "", new=True)
        else:
            text, h = ws.read(entry.file)
            ctx.update(
                file=ws.relative(entry.file),
                text=text,
                hash=h,
                editable=entry.editable,
                template_id=entry.id,
                new=False,
            )
        return studio.page(request, "templates.html", **ctx)

    def preview(request: Request, form: Form) -> Response:
        opened = ws.open_card()
        if opened.card is None:
            raise UserInputError(opened.issues)
        card = opened.card
        task = next((t for t in card.tasks if t.name == form.get("task")), None)
        if task is None:
            raise UserInputError(f"no task {form.get('task')!r} in the card")
        text, file = str(form.get("text", "")), str(form.get("file", ""))
        path = str(ws.folder / file) if not file.startswith("/") else file
        n = _int(form.get("n"), 5)
        result = workbench.preview(
            card, task, text, path, str(form.get("template", "")), n=n, few_shot=form.get("shots") == "few"
        )
        return studio.page(request, "_preview.html", result=result, text=text, task=task)

    def template_save(request: Request, form: Form) -> Response:
        text, file, expected = str(form.get("text", "")), str(form.get("file", "")), str(form.get("hash", ""))
        path = ws.writable(file)
        problems = workbench.check_savable(text, str(path))
        if problems:
            return studio.page(request, "_problems.html", status=400, problems=problems, text=text,
                               ok="", title="not saved: fix these first")  # fmt: skip
        _, new_hash = ws.save(path, text, expected)
        return _saved(studio, request, ws.relative(path), new_hash)

    def mixture_page(request: Request, form: Form) -> Response:
        opened = ws.open_card()
        planned = mixture.plan(opened.text, ws.card_path, {}) if opened.card is not None and ws.card_path else None
        return studio.page(request, "mixture.html", planned=planned, mixture_html=mixture.charts(planned))

    def weights_of(form: Form) -> tuple[Opened, Card, Path, dict[int, float]]:
        """The open card's text and model (it must load), its path, and the weights the form posts."""
        opened = ws.open_card()
        if opened.card is None or ws.card_path is None:
            raise UserInputError(opened.issues)
        weights, bad = mixture.parse_weights({k: str(v) for k, v in form.items()}, len(opened.card.tasks))
        if bad:
            raise UserInputError(bad[0])
        return opened, opened.card, ws.card_path, weights

    def mixture_plan(request: Request, form: Form) -> Response:
        opened, _, card_path, weights = weights_of(form)
        ticket = studio.plans.ticket()
        with studio.plans.run:
            if ticket != studio.plans.latest:
                return Response(status_code=204)  # superseded while it waited: the page shows the newer plan
            planned = mixture.plan(opened.text, card_path, weights)
        return studio.page(request, "_plan.html", planned=planned, mixture_html=mixture.charts(planned))

    def mixture_save(request: Request, form: Form) -> Response:
        opened, card, card_path, weights = weights_of(form)
        # edits the text as read now; save refuses unless that is still what the page loaded (the form's hash)
        text = mixture.set_weights(opened.text, weights, card.mixture.strategy)
        mixture.with_weights(text, card_path, {})  # the new text must still be a valid card
        _, new_hash = ws.save(card_path, text, str(form.get("hash", "")))
        return _saved(studio, request, ws.relative(card_path), new_hash)

    return [
        Route("/", threaded(home)),
        Route("/open", threaded(open_card), methods=["POST"]),
        Route("/card/check", threaded(card_check), methods=["POST"]),
        Route("/card/save", threaded(card_save), methods=["POST"]),
        Route("/templates", threaded(templates_page)),
        Route("/templates/preview", threaded(preview), methods=["POST"]),
        Route("/templates/save", threaded(template_save), methods=["POST"]),
        Route("/mixture", threaded(mixture_page)),
        Route("/mixture/plan", threaded(mixture_plan), methods=["POST"]),
        Route("/mixture/save", threaded(mixture_save), methods=["POST"]),
    ]


def _saved(studio: Studio, request: Request, what: str, new_hash: str) -> Response:
    """The "saved" fragment; the new hash travels in ``X-Content-Hash`` so the page's next save is checked against it."""
    response = studio.page(request, "_saved.html", what=what)
    response.headers["X-Content-Hash"] = new_hash
    return response


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
