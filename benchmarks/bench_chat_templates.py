"""Real chat templates through cardtune's parity check: which pass single-turn, which need what, which are refused.

The templates come from three public projects, fetched once as their registry packages with pip into
``~/.cache/cardtune/chat-template-packages`` (or read from a folder that already holds them, ``--from DIR``):

* axolotl's wheel: ``axolotl/utils/chat_templates/templates/*.jinja``;
* llama-cpp-python's sdist, which vendors llama.cpp's ``models/templates/*.jinja``;
* LLaMA-Factory's wheel: its template registry (``llamafactory/data/template.py``) exported to Jinja with its own
  ``Template._get_jinja_template`` (its formatter code runs; the heavy modules it imports for multimodal plugins
  and dataset loading are replaced by stubs), with the embedded tokenizer after its ``fix_special_tokens``.

Each template runs through ``cardtune.train.parity.check_row`` (the parity check itself, not a training step: a
``tune --max-steps 1`` adds only model set-up) on the embedded model's tokenizer, single-turn, twice:

* **as is**: the template file alone (``train.chat_template: FILE``), no template variables;
* **declared**: with the settings a card can now give it — the end-of-turn markers declared
  (``train.chat_template.end_of_turn``, added as special tokens): LLaMA-Factory's own ``stop_words``, or for the
  others the first special-looking marker the template renders right after the assistant's content; and template
  variables (``train.chat_template_kwargs``) for the ones it reads, from ``KWARGS`` (found with jinja2's
  ``meta.find_undeclared_variables``).

Prints a markdown table (template, result as is, result declared, what was declared) and the pass rates per
cause class. Run: ``python benchmarks/bench_chat_templates.py [--from DIR] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
import types
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardtune.train import chat, models, parity

PACKAGES = {
    "axolotl": ["axolotl"],
    "llama.cpp": ["--no-binary", ":all:", "llama-cpp-python"],
    "LLaMA-Factory": ["llamafactory"],
}
# Template variables a card sets through `train.chat_template_kwargs` when the template reads them.
KWARGS: dict[str, Any] = {
    "enable_thinking": False,
    "thinking": False,
    "reasoning_effort": "low",
    "tools": [],
    "custom_tools": [],
    "builtin_tools": [],
    "documents": [],
    "is_training": True,
    "model_identity": "You are a helpful assistant.",
    "date_string": "26 Jul 2024",
    "keep_cot": False,
    "enable_thoughts": False,
    "functions": "[]",
    "datetime": "26 Jul 2024",
    "reasoning": False,
}
THINKING = {"enable_thinking", "thinking", "keep_cot", "enable_thoughts", "reasoning"}  # tried false, then true
ROW = {
    "source_ref": "probe:0",
    "template_id": "probe",
    "prompt": [{"role": "user", "content": "Review: the movie was great. Is the review positive?"}],
    "completion": [{"role": "assistant", "content": "Yes, the review is positive."}],
}


@dataclass
class Template:
    source: str
    name: str
    text: str
    stop_words: list[str] | None = None  # declared by the project itself (LLaMA-Factory)


@dataclass
class Outcome:
    template: Template
    plain: str  # "pass" or a cause class
    declared: str
    end_of_turn: list[str] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    needs: str = "as is"


def fetch(where: Path | None) -> dict[str, Path]:
    """The three packages' files: from ``where`` if given, else downloaded once with pip into a cache folder."""
    folder = where or Path.home() / ".cache" / "cardtune" / "chat-template-packages"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for source, args in PACKAGES.items():
        stem = args[-1].replace("-", "_")
        found = sorted(folder.glob(f"{stem}-*"))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), *args]
            subprocess.run(cmd, check=True)
            found = sorted(folder.glob(f"{stem}-*"))
        out[source] = found[-1]
    return out


def axolotl_templates(wheel: Path) -> list[Template]:
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if "chat_templates/templates/" in n and n.endswith(".jinja"))
        return [Template("axolotl", Path(n).stem, z.read(n).decode()) for n in names]


def llama_cpp_templates(sdist: Path) -> list[Template]:
    out = []
    with tarfile.open(sdist) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if "/models/templates/" in m.name and m.name.endswith(".jinja") and m.isfile():
                data = t.extractfile(m)
                assert data is not None
                out.append(Template("llama.cpp", Path(m.name).stem, data.read().decode()))
    return out


def llamafactory_templates(wheel: Path) -> list[Template]:
    """Export every registered template with LLaMA-Factory's own Jinja exporter (light modules run, heavy stubbed)."""
    root = Path(tempfile.mkdtemp(prefix="cardtune-lf-"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(root, [n for n in z.namelist() if n.startswith("llamafactory/")])
    pkg = root / "llamafactory"
    saved = {k: v for k, v in sys.modules.items() if k.startswith("llamafactory")}

    def package(name: str, path: Path) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
        return mod

    def load(name: str, path: Path) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    class _Log:
        def __getattr__(self, _: str) -> Any:
            return lambda *a, **k: None

    try:
        package("llamafactory", pkg)
        extras = package("llamafactory.extras", pkg / "extras")
        extras.logging = types.SimpleNamespace(get_logger=lambda *_: _Log())  # type: ignore[attr-defined]
        sys.modules["llamafactory.extras.logging"] = extras.logging  # type: ignore[assignment]
        package("llamafactory.data", pkg / "data")
        data_utils = types.ModuleType("llamafactory.data.data_utils")
        data_utils.SLOTS = list  # type: ignore[attr-defined]
        data_utils.Role = types.SimpleNamespace(  # type: ignore[attr-defined]
            USER="user", ASSISTANT="assistant", SYSTEM="system", FUNCTION="function", OBSERVATION="observation"
        )
        sys.modules["llamafactory.data.data_utils"] = data_utils
        mm = types.ModuleType("llamafactory.data.mm_plugin")
        mm.get_mm_plugin = lambda *a, **k: None  # type: ignore[attr-defined]
        mm.BasePlugin = object  # type: ignore[attr-defined]
        sys.modules["llamafactory.data.mm_plugin"] = mm
        load("llamafactory.data.tool_utils", pkg / "data" / "tool_utils.py")
        load("llamafactory.data.formatter", pkg / "data" / "formatter.py")
        registry = load("llamafactory.data.template", pkg / "data" / "template.py")
        out = []
        for name, registered in sorted(registry.TEMPLATES.items()):
            tok = models.default_tokenizer()
            tpl = copy.deepcopy(registered)
            try:
                tpl.fix_special_tokens(tok)
                text = tpl._get_jinja_template(tok)
            except ValueError:  # a slot kind the exporter does not support (LLaMA-Factory says so too)
                continue
            stops = list(dict.fromkeys([*tpl.stop_words, *([tok.eos_token] if tpl.replace_eos else [])]))
            out.append(Template("LLaMA-Factory", name, text, stops))
        return out
    finally:
        for k in [k for k in sys.modules if k.startswith("llamafactory")]:
            del sys.modules[k]
        sys.modules.update(saved)


def end_of_turn(t: Template, kwargs: dict[str, Any]) -> list[str]:
    """Markers to declare: the project's own stop words (LLaMA-Factory), plus the first marker the template renders
    after the assistant's content that it does not also render before the content in the assistant turn, when the
    embedded model does not already stop at it."""
    tok = models.default_tokenizer()
    tok.chat_template = t.text
    found: list[str] = list(t.stop_words or [])
    try:
        full = tok.apply_chat_template(ROW["prompt"] + ROW["completion"], tokenize=False, **kwargs)
    except Exception:
        full = ""
    content = ROW["completion"][0]["content"]
    if content in full:
        at = full.rfind(content)
        opened = tok.apply_chat_template(ROW["prompt"], add_generation_prompt=True, tokenize=False, **kwargs)
        lead = full[len(opened) : at] if full.startswith(opened) else ""
        closing = full[at + len(content) :]
        first = chat.end_marker(closing)
        marker = next((m for m in [*([first] if first else []), *chat.marker_like(closing)] if m not in lead), None)
        if marker is not None and marker not in found:
            found.append(marker)
    stops = {tok.eos_token, "<|im_end|>", "<|eot_id|>"}  # the embedded model stops at these already
    return [m for m in found if m not in stops]


def configs(t: Template) -> list[tuple[str, list[str], dict[str, Any], bool]]:
    """(what is set, end_of_turn, chat_template_kwargs, main) to try in order: as is, markers declared, then the
    kwargs too (thinking off, then on). ``main`` marks the fullest setting with the kwargs as in ``KWARGS``: a
    template no setting passes is reported with its refusal there."""
    read = chat.template_variables(t.text, provided=chat.PROVIDED - {"tools", "documents"})
    kwargs = {k: v for k, v in KWARGS.items() if k in read}
    eot = end_of_turn(t, kwargs)
    label = "end_of_turn + kwargs" if eot else "kwargs"
    out = [("as is", [], {}, not eot and not kwargs)]
    if eot:
        out.append(("end_of_turn", eot, {}, not kwargs))
    if kwargs:
        out.append((label, eot, kwargs, True))
        flipped = {k: (not v if k in THINKING else v) for k, v in kwargs.items()}
        if flipped != kwargs:
            out.append((label, eot, flipped, False))
    return out


def run_one(t: Template, end_of_turn: list[str], kwargs: dict[str, Any], folder: Path) -> tuple[str, str]:
    """("pass" or the cause class, the failure message) for one template with these settings."""
    tok = models.default_tokenizer()
    loaded = models.Loaded(models.default_model(tok, 0), tok, "default", is_default=True)
    path = folder / f"{t.source}-{t.name}.jinja".replace("/", "_")
    path.write_text(t.text, encoding="utf-8")
    try:
        models.apply_chat_template_choice(loaded, path, end_of_turn=end_of_turn, add_special_tokens=bool(end_of_turn))
    except Exception as exc:
        return "end_of_turn_not_a_token", str(exc)
    outcome = parity.check_row(
        tok, dict(ROW), conversational=True, stop_ids=models.stop_token_ids(loaded), kwargs=kwargs
    )
    if isinstance(outcome, parity.ParityFailure):
        return outcome.cause, outcome.message
    return "pass", ""


def survey(where: Path | None) -> list[Outcome]:
    files = fetch(where)
    templates = (
        axolotl_templates(files["axolotl"])
        + llama_cpp_templates(files["llama.cpp"])
        + llamafactory_templates(files["LLaMA-Factory"])
    )
    folder = Path(tempfile.mkdtemp(prefix="cardtune-bench-"))
    out = []
    for t in templates:
        tries = configs(t)
        plain, detail = run_one(t, [], {}, folder)
        result = main = Outcome(t, plain, plain, [], {}, detail, "as is")
        for label, eot, kwargs, is_main in tries[1:] if plain != "pass" else []:
            cause, detail = run_one(t, eot, kwargs, folder)
            attempt = Outcome(t, plain, cause, eot, kwargs, detail, label)
            main = attempt if is_main else main
            if cause == "pass":
                result = attempt
                break
        out.append(result if result.declared == "pass" else main)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(items: list[str]) -> str:
    return ", ".join(f"`{_cell(m)}`" for m in items)


def table(outcomes: list[Outcome]) -> str:
    """One markdown row per template: as is, with what the card declares, and what that is."""
    lines = [
        "| source | template | as is | declared | with | `end_of_turn` | `chat_template_kwargs` |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        kwargs = [f"{k}: {json.dumps(v)}" for k, v in o.kwargs.items()]
        with_ = o.needs if o.declared == "pass" else "-"
        lines.append(
            f"| {o.template.source} | {_cell(o.template.name)} | {o.plain} | {o.declared} | {with_} | "
            f"{_code(o.end_of_turn)} | {_code(kwargs)} |"
        )
    return "\n".join(lines)


def condensed(outcomes: list[Outcome]) -> str:
    """The docs' compatibility table: passing templates grouped by what they need, each refusal with its cause."""
    lines = ["| source | passes as is | passes with `end_of_turn` declared | needs `chat_template_kwargs` too |"]
    lines.append("|---|---|---|---|")
    for source in dict.fromkeys(o.template.source for o in outcomes):
        mine = [o for o in outcomes if o.template.source == source and o.declared == "pass"]

        def names(needs: tuple[str, ...], of: list[Outcome] = mine) -> str:
            picked = [o for o in of if o.needs in needs]
            return f"{len(picked)}: " + ", ".join(
                _cell(o.template.name) + (f" (`{_cell(', '.join(o.end_of_turn))}`)" if "end" in o.needs else "")
                for o in picked
            )

        kw = [o for o in mine if "kwargs" in o.needs]
        kw_names = f"{len(kw)}: " + ", ".join(
            f"{_cell(o.template.name)} ({', '.join(f'{k}: {json.dumps(v)}' for k, v in o.kwargs.items())})" for o in kw
        )
        lines.append(f"| {source} | {names(('as is',))} | {names(('end_of_turn',))} | {kw_names} |")
    lines += ["", "| refused | cause | the check says |", "|---|---|---|"]
    for o in outcomes:
        if o.declared != "pass":
            lines.append(
                f"| {o.template.source} {_cell(o.template.name)} | {o.declared} | {parity.CAUSES[o.declared]} |"
            )
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> str:
    """Pass rates as is and declared, per source, and the refusals per cause class."""
    totals = Counter(o.template.source for o in outcomes)
    out = []
    for label, attr in (("as is", "plain"), ("declared", "declared")):
        counts = Counter(getattr(o, attr) for o in outcomes)
        passed = counts.pop("pass", 0)
        ok = Counter(o.template.source for o in outcomes if getattr(o, attr) == "pass")
        per_source = ", ".join(f"{s} {ok[s]}/{n}" for s, n in totals.items())
        causes = ", ".join(f"{cause} {n}" for cause, n in counts.most_common())
        out.append(
            f"**{label}**: {passed}/{len(outcomes)} pass ({100 * passed / len(outcomes):.1f}%; {per_source}); "
            f"refused: {causes or 'none'}"
        )
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="where", type=Path, help="folder holding the downloaded packages")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    ap.add_argument("--details", action="store_true", help="print each refusal's message")
    ap.add_argument("--docs", action="store_true", help="print the condensed table of docs/training.md instead")
    args = ap.parse_args()
    from cardtune.train.progress import quiet_libraries

    with quiet_libraries():
        outcomes = survey(args.where)
    text = summary(outcomes) + "\n\n" + (condensed(outcomes) if args.docs else table(outcomes))
    print(text)
    if args.details:
        for o in outcomes:
            if o.declared != "pass":
                print(f"\n## {o.template.source}/{o.template.name}: {o.declared}\n{o.detail}")
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
