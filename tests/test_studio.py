"""``cardtune studio`` without a browser: the token gate, the write rules, conflict-checked saves, comment-keeping card
edits, and previews that turn every template failure into a line (never an exception). Real HTTP against a real
server in a thread; the browser tests are ``test_studio_browser.py``.
"""

from __future__ import annotations

import difflib
import html
import http.cookiejar
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _studio import make_workspace
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="the studio needs the [studio] extra")

from cardtune.studio import mixture, workbench
from cardtune.studio.workspace import NEW_FILE, Conflict, Refused, Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(make_workspace(tmp_path / "ws"), tmp_path / "runs")


class Client:
    """urllib with a cookie jar, against a running studio; returns (status, headers, body) and never raises."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, path: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req) as resp:
                return resp.status, resp.headers, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()


@pytest.fixture
def served(ws: Workspace) -> Iterator[tuple[Workspace, Any]]:
    from cardtune.studio.server import start

    running = start(ws)
    yield ws, running
    running.stop()


def test_every_request_needs_the_token(served: tuple[Workspace, Any]) -> None:
    _, running = served
    anon = Client(running.url)
    for path in ("/", "/templates", "/static/htmx.min.js", "/versions"):
        assert anon.call(path)[0] == 403, path
    assert anon.call("/?token=" + running.token[:-1] + "x")[0] == 403
    assert anon.call("/?token=%C3%A9")[0] == 403  # non-ASCII: wrong, not a crash
    user = Client(running.url)
    status, headers, body = user.call(f"/templates?task=reviews&token={running.token}")
    assert status == 200 and "reviews/feeling" in body  # redirected to the same page, the token now a cookie
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert user.call("/static/htmx.min.js")[0] == 200
    assert user.call("/static/../app.py")[0] == 404
    refused = user.call("/card/check", {"text": "x"}, {"Origin": "http://evil.example"})
    assert refused[0] == 403 and "another origin" in refused[2]


def test_writes_stay_inside_the_card_folder_and_output_dir(served: tuple[Workspace, Any], tmp_path: Path) -> None:
    ws, running = served
    outside = tmp_path / "outside.yaml"
    for given in ("../outside.yaml", str(outside), "/etc/passwd", "templates/../../outside.yaml", ""):
        with pytest.raises(Refused):
            ws.writable(given)
    (ws.folder / "escape").symlink_to(tmp_path)
    with pytest.raises(Refused):
        ws.writable("escape/outside.yaml")
    assert ws.writable("templates/new.yaml") == ws.folder / "templates" / "new.yaml"
    assert ws.writable(ws.output_dir / "x" / "report.html").is_relative_to(ws.output_dir)
    user = Client(running.url)
    user.call("/?token=" + running.token)
    status, _, body = user.call("/templates/save", {"file": "../outside.yaml", "text": "x: 1\n", "hash": NEW_FILE})
    assert status == 400 and "outside the card's folder" in html.unescape(body) and not outside.exists()
    status, _, body = user.call("/versions/..%2F..%2Fetc/passwd")
    assert status in (400, 404) and "Traceback" not in body


def test_a_stale_save_is_refused_and_nothing_is_lost(ws: Workspace) -> None:
    path = ws.folder / "templates" / "reviews.yaml"
    text, loaded = ws.read(path)
    ws.save("templates/reviews.yaml", text + "# first tab\n", loaded)
    with pytest.raises(Conflict, match="changed on disk"):
        ws.save("templates/reviews.yaml", text + "# second tab\n", loaded)
    assert path.read_text(encoding="utf-8").endswith("# first tab\n")
    with pytest.raises(Conflict):
        ws.save("templates/reviews.yaml", "x", NEW_FILE)  # "new file" while one exists
    new_path, h = ws.save("templates/other.yaml", "family: other\n", NEW_FILE)
    assert ws.read(new_path) == ("family: other\n", h)
    assert not [p for p in new_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_weights_are_saved_with_every_comment_kept(ws: Workspace) -> None:
    assert ws.card_path is not None
    text = ws.card_path.read_text(encoding="utf-8")
    new = mixture.set_weights(text, {0: 2.5, 1: 1.5}, "examples_proportional")  # tasks[1] unchanged
    delta = [d for d in difflib.ndiff(text.splitlines(), new.splitlines()) if d[:2] in ("+ ", "- ")]
    assert delta == ["+     weight: 2.5"]  # one line added to tasks[0]; every other byte (comments too) as it was
    again = mixture.set_weights(new, {1: 4}, "examples_proportional")
    delta = [d for d in difflib.ndiff(new.splitlines(), again.splitlines()) if d[:2] in ("+ ", "- ")]
    assert delta == [
        "-     weight: 1.5                         # a bit more arithmetic",
        "+     weight: 4                         # a bit more arithmetic",
    ]
    assert mixture.with_weights(new, ws.card_path, {}).tasks[0].weight == 2.5
    planned = mixture.plan(text, ws.card_path, {1: 4.0})
    base = mixture.plan(text, ws.card_path, {})
    target = {p.task: p.target for p in planned.plan}
    assert target["arithmetic"] > {p.task: p.target for p in base.plan}["arithmetic"]
    assert mixture.parse_weights({"weight-0": "-1", "weight-1": "x", "weight-2": "nan"}, 3)[1] == [
        "tasks[0].weight: must be a number > 0, got '-1'",
        "tasks[1].weight: 'x' is not a number",
        "tasks[2].weight: must be a number > 0, got 'nan'",
    ]


def _preview(ws: Workspace, text: str) -> workbench.PreviewResult:
    opened = ws.open_card()
    assert opened.card is not None
    file = str(ws.folder / "templates" / "reviews.yaml")
    return workbench.preview(opened.card, opened.card.tasks[0], text, file, "reviews/feeling", n=3)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("{{ ''.__class__ }}", "not allowed (sandbox"),
        ("{{ text | shout }}", "No filter named 'shout'"),
        ("{{ answer_choices[label + 7] }}", "has no element 7"),  # fails on every row, at render time
        ("{% for i in range(10**9) %}x{% endfor %}", "range"),  # the sandbox's bounds, as for a build
        ("{{ texts }}", "undefined"),
    ],
)
def test_a_failing_template_is_a_problem_at_its_line(ws: Workspace, snippet: str, message: str) -> None:
    text = (ws.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "Did the reviewer feel" in line)
    lines[at] += " " + snippet
    result = _preview(ws, "\n".join(lines) + "\n")
    assert result.errors, snippet
    assert any(message in p.message for p in result.errors), [p.message for p in result.errors]
    assert any(p.line == at + 1 for p in result.errors), [(p.line, p.message) for p in result.errors]
    assert not result.rows


def test_preview_colours_fields_and_few_shot(ws: Workspace) -> None:
    text = (ws.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    result = _preview(ws, text)
    assert not result.problems and len(result.rows) == 3
    user = result.rows[0].turns[0]
    assert any(i == 0 for _, i in user.runs) and "".join(t for t, _ in user.runs).startswith("Review: ")
    opened = ws.open_card()
    assert opened.card is not None
    few = workbench.preview(
        opened.card, opened.card.tasks[0], text, str(ws.folder / "templates/reviews.yaml"), "reviews/feeling",
        n=2, few_shot=True,
    )  # fmt: skip
    assert [r.shots for r in few.rows] == [3, 3]


def test_unreadable_source_and_broken_card_are_one_line_each(ws: Workspace) -> None:
    (ws.folder / "data" / "sentiment.jsonl").write_bytes(b"\xff\xfe{not json\n")
    text = (ws.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    result = _preview(ws, text)
    assert result.source_error is not None and "\n" not in result.source_error
    assert ws.card_path is not None
    ws.card_path.write_text(ws.card_path.read_text(encoding="utf-8").replace("total: 300", "total: -3"))
    opened = ws.open_card()
    assert opened.card is None and any("mixture.total" in str(i) for i in opened.issues)


def test_cli_studio_needs_a_real_card(tmp_path: Path) -> None:
    from cardtune.cli import app
    from cardtune.studio import missing

    assert missing() == []  # the dev install has the [studio] extra
    result = CliRunner().invoke(app, ["studio", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "no such card file" in result.output


def test_new_template_keeps_the_file(ws: Workspace) -> None:
    text = (ws.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    new = workbench.new_template(text, "reviews", ["text", "label", "source_ref"])
    assert new.startswith(text.split("templates:")[0])  # header comments and examples as they were
    assert "# an inversion: write a review with the given sentiment" in new and "id: reviews/new" in new
    assert not workbench.check_savable(new, "reviews.yaml")
    assert os.path.basename(workbench.new_file_for(ws, ws.open_card().card, ws.open_card().card.tasks[1])[0]) == (  # type: ignore[union-attr]
        "arithmetic.yaml"
    )


def test_steps_tell_an_observer_every_start_advance_and_end() -> None:
    from cardtune.curate.progress import Steps

    heard: list[tuple[str, int, int, float | None]] = []
    with Steps(observer=lambda *event: heard.append(event)) as steps:
        with steps.step("read", total=2) as advance:
            advance(1)
            advance(1)
        with steps.step("write"):
            pass
    assert [(n, c, t) for n, c, t, _ in heard] == [("read", 0, 2), ("read", 1, 2), ("read", 2, 2), ("read", 2, 2),
                                                   ("write", 0, 1), ("write", 1, 1)]  # fmt: skip
    assert [s is None for *_, s in heard] == [True, True, True, False, True, False]
    assert heard[3][3] == steps.timings["read"]
