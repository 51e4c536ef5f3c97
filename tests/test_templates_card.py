"""Card integration: `cardtune validate` resolves template references and checks source columns."""

from __future__ import annotations

import json
from pathlib import Path

from cardtune.curate.card.load import load_card
from cardtune.curate.card.validate import check_templates
from cardtune.curate.templating.card_templates import task_templates

DATA = Path(__file__).parent / "data" / "templates"


def make_card(tmp_path: Path, templates: str, columns: str = "", extra: str = "") -> Path:
    rows = [{"sentence1": "A man is cooking.", "hypothesis": "Someone cooks.", "label": 0}]
    (tmp_path / "rte.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    card = tmp_path / "card.yaml"
    card.write_text(
        f"""name: t
{extra}tasks:
  - name: rte
    source: {{path: rte.jsonl}}
{columns}    templates: {templates}
""",
        encoding="utf-8",
    )
    return card


def test_resolves_and_passes(tmp_path: Path) -> None:
    card = load_card(make_card(tmp_path, "[nli/*]", "    columns: {premise: sentence1}\n"))
    assert check_templates(card) == []
    assert len(task_templates(card)["rte"]) >= 6


def test_unknown_template_at_card_line_with_did_you_mean(tmp_path: Path) -> None:
    path = make_card(tmp_path, "[nli/*, nli/does-it-folow]", "    columns: {premise: sentence1}\n")
    issues = check_templates(load_card(path))
    assert [str(i) for i in issues] == [
        f"{path}:6: tasks[0].templates[1]: no template matches 'nli/does-it-folow' (did you mean 'nli/does-it-follow'?)"
    ]


def test_missing_source_column_is_caught_before_rendering(tmp_path: Path) -> None:
    path = make_card(tmp_path, "[nli/does-it-follow]")
    issues = [str(i) for i in check_templates(load_card(path))]
    assert len(issues) == 1
    assert f"{path}:5: tasks[0].templates[0]: template 'nli/does-it-follow' needs input(s) 'premise'" in issues[0]
    assert "columns: {premise: <source column>}" in issues[0]


def test_card_local_dir_and_promptsource_file(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(DATA / "local", tmp_path / "mine")
    shutil.copy(DATA / "promptsource_rte.yaml", tmp_path / "rte_templates.yaml")
    path = make_card(
        tmp_path, "[rte_templates.yaml]", "    columns: {premise: sentence1}\n", extra="templates_dir: mine\n"
    )
    card = load_card(path)
    assert check_templates(card) == []
    assert {t.id for t in task_templates(card)["rte"]} >= {"super_glue_rte/mnli-crowdsource"}
    bad = load_card(make_card(tmp_path, "[nope.yaml]"))
    assert "template file 'nope.yaml' not found" in str(check_templates(bad)[0])
