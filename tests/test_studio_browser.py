"""``cardtune studio`` in a real browser: headless Chromium driven by Playwright, against one studio server.

The tests run in file order on one page (and a second tab for the conflict): edit a template and see the preview
change, break it and see the error at its line, save (and be refused from a stale tab), move a weight and see the
plan change, build and open the version, open a reject and see its evidence, diff two versions, read runs, and the
bad-input cases. Chromium is Debian's (``apt-get install -y chromium`` is tried where it is missing); without one the
module is skipped with the reason. ``CARDTUNE_STUDIO_SHOTS=docs/studio`` also writes the README's screenshots.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _studio import find_chromium, make_run, make_workspace

pytestmark = pytest.mark.browser
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
expect = playwright.expect
expect.set_options(timeout=60_000)
SHOTS = os.environ.get("CARDTUNE_STUDIO_SHOTS")
TIMEOUT = 60_000  # ms: generous for a loaded CI machine; a build or a dry run on the test card takes seconds


class Env:
    def __init__(self, folder: Path, running: Any) -> None:
        self.folder, self.running = folder, running
        self.card = folder / "card.yaml"
        self.url = running.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from cardtune.studio.server import start
    from cardtune.studio.workspace import Workspace

    folder = tmp_path_factory.mktemp("studio")
    card = make_workspace(folder / "ws")
    runs = folder / "runs"
    make_run(runs, "studio-demo-lora", "lora", [2.4, 1.9, 1.5, 1.2, 1.1], 0.70, 0.45)
    make_run(runs, "studio-demo-full", "full", [2.4, 1.6, 1.0, 0.7, 0.5], 0.85, 0.40)
    running = start(Workspace(card, runs))
    yield Env(card.parent, running)
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path, why = find_chromium()
    if path is None:
        pytest.skip(f"no browser for the studio's browser tests: {why}")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, env: Env) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # the studio's CSP applies (no eval)
    context.set_default_timeout(TIMEOUT)
    pg = context.new_page()
    pg.goto(env.running.login_url)  # the token once, in the URL; then a cookie
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def editor_text(page: Any) -> str:
    return str(page.locator("#text").input_value())


def set_editor(page: Any, text: str) -> None:
    page.locator("#text").fill(text)  # fires `input`: htmx re-renders the preview after its debounce


def test_token_is_required(page: Any, env: Env) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as no_token:
        urllib.request.urlopen(env.url + "/templates")
    assert no_token.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(env.url + "/?token=not-the-token")
    assert wrong.value.code == 403
    assert "token=" not in page.url  # the token left the address bar
    assert page.locator("#card-state").inner_text() == "card loads"
    assert page.locator("#problems").inner_text() == "card is valid"
    shot(page, "card")


def test_edit_a_template_and_see_the_preview_change(page: Any, env: Env) -> None:
    page.goto(env.url + "/templates?task=reviews&template=reviews/feeling")
    rows = page.locator("#rows .row")
    rows.first.wait_for()
    assert rows.count() == 5
    assert page.locator("#rows .fld.f0").count() >= 5  # the review text, coloured as its field
    assert "Did the reviewer feel" in page.locator("#rows").inner_text()
    set_editor(page, editor_text(page).replace("Did the reviewer feel", "How did the writer feel"))
    expect(page.locator("#rows")).to_contain_text("How did the writer feel")
    page.get_by_label("few-shot").check()
    page.locator("#rows .tag", has_text="few-shot").first.wait_for()
    page.get_by_label("zero-shot").check()
    page.locator("#rows .tag", has_text="zero-shot").first.wait_for()
    shot(page, "templates")


def test_an_error_shows_inline_at_its_line(page: Any) -> None:
    good = editor_text(page)
    lines = good.splitlines()
    at = next(i for i, line in enumerate(lines) if "How did the writer feel" in line)
    lines[at] += " {{ text | shout }}"
    set_editor(page, "\n".join(lines) + "\n")
    marked = page.locator(f".editor .overlay div.bad[data-ln='{at + 1}']")
    marked.wait_for()
    assert "No filter named 'shout'" in marked.inner_text()
    assert page.locator(f"#problems li[data-line='{at + 1}']").count() == 1
    assert page.locator(".editor .gutter span.bad").inner_text() == str(at + 1)
    shot(page, "templates-error")
    lines[at] = lines[at].replace("{{ text | shout }}", "{{ ''.__class__ }}")  # the sandbox refuses it at load
    set_editor(page, "\n".join(lines) + "\n")
    expect(page.locator("#problems")).to_contain_text("not allowed")
    assert "Traceback" not in page.content()
    set_editor(page, good)
    page.locator("#rows .row").first.wait_for()
    assert page.locator(".editor .overlay div.bad").count() == 0


def test_save_keeps_comments_and_a_stale_tab_is_refused(page: Any, env: Env) -> None:
    other = page.context.new_page()
    other.goto(page.url)
    other.locator("#rows .row").first.wait_for()
    page.locator("#save").click()
    page.locator("#saved").wait_for()
    saved = (env.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    assert "How did the writer feel" in saved
    assert "# an inversion: write a review with the given sentiment" in saved  # the other template, comments kept
    set_editor(other, editor_text(other).replace("Review:", "Customer review:"))
    other.locator("#save").click()
    error = other.locator("#error")
    error.wait_for()
    assert "conflict" in error.inner_text() and "changed on disk" in error.inner_text()
    assert "Customer review:" not in (env.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")
    other.close()
    set_editor(page, editor_text(page).replace("How did the writer feel", "How did the writer feel, overall,"))
    with page.expect_response(lambda r: r.url.endswith("/templates/save")) as response:
        page.locator("#save").click()  # the first tab's next save is checked against the hash of its own save
    assert response.value.status == 200
    assert "overall," in (env.folder / "templates" / "reviews.yaml").read_text(encoding="utf-8")


def test_build_and_open_the_version(page: Any) -> None:
    page.locator("nav.studio a", has_text="Build").click()
    page.locator("#build").click()
    link = page.locator("#version-link")
    link.wait_for()
    assert page.locator(".steps .step.done").count() >= 4  # every step reported, with its time
    shot(page, "build")
    link.click()
    page.locator("#funnel svg").first.wait_for()
    assert page.locator("#mixture svg").count() >= 1 and page.locator("#lengths svg").count() >= 1
    assert "decontaminate" in page.locator("#facets").inner_text()
    shot(page, "version")


def test_open_a_reject_and_see_its_evidence(page: Any) -> None:
    page.locator("#facets a[data-facet^='decontaminate:']").click()
    page.locator("#reject-rows tr.pick").first.wait_for()
    assert set(page.locator("#reject-rows tbody td:first-child").all_inner_texts()) == {"decontaminate"}
    page.locator("#reject-rows tr.pick").first.click()
    evidence = page.locator("#evidence")
    evidence.wait_for()
    assert '"benchmark": "arithmetic_test"' in evidence.inner_text()
    assert page.locator("#reject pre mark").count() >= 1  # the matched n-gram, marked in the row's text
    page.locator("#reject").scroll_into_view_if_needed()
    shot(page, "rejects")


def test_move_a_weight_and_see_the_plan_change_then_diff(page: Any, env: Env) -> None:
    page.locator("nav.studio a", has_text="Mixture").click()
    target = page.locator("tr[data-task='arithmetic'] .target")
    before = target.inner_text()
    page.locator("#w-1").fill("4")
    expect(target).not_to_have_text(before)
    assert int(target.inner_text().replace(",", "")) > int(before.replace(",", ""))
    shot(page, "mixture")
    page.locator("#save-mix").click()
    page.locator("#saved").wait_for()
    text = env.card.read_text(encoding="utf-8")
    assert re.search(r"weight: 4\s+# a bit more arithmetic", text)  # the comment stayed on its line
    assert "# kept whole for zero-shot eval" in text
    page.locator("nav.studio a", has_text="Build").click()
    page.locator("#build").click()
    page.locator("#version-link").wait_for()
    page.locator("nav.studio a", has_text="Versions").click()
    page.locator("form[action='/diff'] button").click()
    changes = page.locator("#changes")
    changes.wait_for()
    assert "tasks[1].weight" in changes.inner_text()
    shot(page, "diff")


def test_runs_loss_curves_and_compare(page: Any) -> None:
    page.locator("nav.studio a", has_text="Runs").click()
    page.locator("a", has_text="studio-demo-lora").click()
    page.locator("#loss svg polyline").first.wait_for()
    shot(page, "run")
    assert page.locator("#loss svg polyline").count() == 2  # train and eval loss
    assert page.locator("#loss svg circle").count() == 6  # 5 logged train losses, 1 eval loss
    assert "held-out" in page.locator("#eval").inner_text()
    page.go_back()
    for box in page.locator("input[name=run]").all():
        box.check()
    page.get_by_role("button", name="Compare").click()
    table = page.locator("#compare")
    table.wait_for()
    text = table.inner_text()
    assert "seen (macro)" in text and "held-out (macro)" in text and "acc 0.850" in text
    shot(page, "compare")


def test_bad_inputs_show_errors_and_the_rest_stays_usable(page: Any, env: Env) -> None:
    base = env.url
    source = env.folder / "data" / "topics.csv"
    saved = source.read_bytes()
    source.write_bytes(b"\xff\xfe\x00garbage\n")
    try:
        page.goto(base + "/templates?task=topic")
        error = page.locator("#source-error")
        error.wait_for()
        assert len(error.inner_text().splitlines()) == 1
    finally:
        source.write_bytes(saved)
    templates = env.folder / "templates" / "reviews.yaml"
    good = templates.read_text(encoding="utf-8")
    templates.write_text(good.replace("family: reviews", "family: reviews\nfamily: again"), encoding="utf-8")
    try:  # a template file that does not load: its error is listed, the file opens with the error at its line
        page.goto(base + "/templates?task=reviews")
        assert "duplicate key" in page.locator("#template-issues").inner_text()
        page.locator("#template-issues a", has_text="open templates/reviews.yaml").click()
        page.locator(".editor .overlay div.bad[data-ln='3']").wait_for()
        page.goto(base + "/templates?task=arithmetic&template=math/direct-answer")  # other tasks still work
        page.locator("#rows .row").first.wait_for()
    finally:
        templates.write_text(good, encoding="utf-8")
    card_text = env.card.read_text(encoding="utf-8")
    env.card.write_text(card_text.replace("weight: 4", "weight: -4"), encoding="utf-8")
    try:
        page.goto(base + "/")
        page.locator("#problems li").first.wait_for()
        assert "greater than 0" in page.locator("#problems").inner_text()
        assert page.locator("#card-state").inner_text().startswith("card has 1 problem")
        page.goto(base + "/versions")  # versions and runs still work with a broken card
        page.locator("table a code").nth(1).wait_for()  # at least the two versions built above
        page.goto(base + "/mixture")
        assert "does not load" in page.locator("main").inner_text()
    finally:
        env.card.write_text(card_text, encoding="utf-8")
