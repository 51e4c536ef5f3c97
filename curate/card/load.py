"""Loading a card: YAML with lines → the ``Card`` model, plus the cross-field checks that need no data.

Every mistake of a card is reported at once as ``file:line: dotted.field: message``: schema errors from
pydantic, cross-field checks (unique task names, not every task held out, count weights), and unknown or
reserved ``train.sft`` keys at their own line. :func:`unused_option_warnings` lists what is legal but ignored
(a mixture option its strategy never reads): ``cardtune validate`` prints those as warnings and still exits 0.
"""

from __future__ import annotations

from pathlib import Path

from cardtune.curate.card.schema import Card
from cardtune.curate.card.yamlsrc import LocatedYaml, load_located, read_user_file, validate_model
from cardtune.curate.errors import Issue, UserInputError, did_you_mean


def cross_checks(card: Card) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across fields that need no data. Returns (location, message) pairs."""
    problems = duplicate_task_names([t.name for t in card.tasks])
    for i, task in enumerate(card.tasks):
        if card.mixture.strategy == "count" and float(task.weight) != int(task.weight):
            problems.append(
                (("tasks", i, "weight"), "with strategy `count` the weight is an example count (an integer)")
            )
        for j, col in enumerate(task.columns):
            if not col:
                problems.append((("tasks", i, "columns", j), "empty input name"))
        if task.held_out_templates and task.held_out:
            problems.append(
                (("tasks", i, "held_out_templates"), "a held-out task is never trained: every template is unseen")
            )
        elif task.held_out_templates and not task.templates:
            problems.append((("tasks", i, "held_out_templates"), "the task has no `templates` to hold out"))
        if task.conversation is not None and task.templates:
            problems.append((("tasks", i, "conversation"), "a task with `templates` renders its own conversations"))
        if task.conversation is not None and card.mode == "finetune":
            problems.append((("tasks", i, "conversation"), "conversations need `mode: instruction`"))
    names = {t.name: t for t in card.tasks}
    for task_name in card.eval.templates:
        if task_name not in names:
            problems.append(
                (("eval", "templates", task_name), f"no task named {task_name!r}{did_you_mean(task_name, names)}")
            )
        elif names[task_name].held_out:
            problems.append(
                (("eval", "templates", task_name), "a held-out task is never trained: its heldout split is unseen")
            )
    if all(t.held_out for t in card.tasks):
        problems.append((("tasks",), "every task is held_out: at least one task must be trained on"))
    return problems


def unused_option_warnings(card: Card) -> list[Issue]:
    """Mixture options the card sets to a non-default value that its strategy never reads (warnings, not errors).

    ``temperature`` is read only by `temperature`; ``scale`` by `examples_proportional` and `temperature`; ``cap``
    by those two (in the rate) and by `fixed` only for the default ``total`` (the sum of capped task sizes).
    """
    mix = card.mixture
    fields = type(mix).model_fields
    strategy = mix.strategy
    out: list[Issue] = []

    def changed(name: str) -> bool:
        return name in mix.model_fields_set and getattr(mix, name) != fields[name].default

    def warn(name: str, why: str) -> None:
        out.append(card.issue(("mixture", name), f"ignored: {why}"))

    if changed("temperature") and strategy != "temperature":
        warn("temperature", f"only strategy `temperature` reads `temperature`, not `{strategy}`")
    if changed("scale") and strategy in ("fixed", "count"):
        warn("scale", f"only `examples_proportional` and `temperature` read `scale`, not `{strategy}`")
    if changed("cap"):
        if strategy == "count":
            warn("cap", "strategy `count` does not read `cap` (each weight is the task's example count)")
        elif strategy == "fixed" and (mix.total is not None or mix.total_tokens is not None):
            warn("cap", "with strategy `fixed`, `cap` only sets the default `total`, and the card gives the total")
    return sorted(out, key=lambda i: i.line)


def load_card(path: str | Path) -> Card:
    """Read, parse and validate a card file. Raises ``UserInputError`` listing every problem found."""
    path = Path(path)
    text = read_user_file(path, what="card")
    located = load_located(text, str(path))
    return card_from_located(located, path)


def card_from_located(located: LocatedYaml, path: Path | None) -> Card:
    """Validate parsed YAML into a ``Card`` (all errors at once, with lines)."""
    if not isinstance(located.data, dict):
        kind = "a list" if isinstance(located.data, list) else type(located.data).__name__
        raise UserInputError([Issue(located.file, located.line_of(()), (), f"a card must be a mapping, got {kind}")])
    issues: list[Issue] = []
    card: Card | None = None
    try:
        card = validate_model(Card, located)
    except UserInputError as exc:
        issues.extend(exc.issues)
    if card is not None:
        issues.extend(located.issue(loc, msg) for loc, msg in cross_checks(card))
    else:
        issues.extend(_partial_cross_checks(located))
    issues.extend(_sft_issues(located))
    if issues:
        issues.sort(key=lambda i: i.line)
        raise UserInputError(issues)
    assert card is not None
    card._path = path.resolve() if path is not None else None
    card._lines = located.lines
    return card


def _sft_issues(located: LocatedYaml) -> list[Issue]:
    """Unknown or reserved ``train.sft`` keys and values of the wrong type, each at its own line (torch-free)."""
    from cardtune.train.sft_fields import sft_key_problem, sft_value_problem

    train = located.data.get("train") if isinstance(located.data, dict) else None
    sft = train.get("sft") if isinstance(train, dict) else None
    if not isinstance(sft, dict):
        return []
    problems = ((key, sft_key_problem(str(key)) or sft_value_problem(str(key), value)) for key, value in sft.items())
    return [located.issue(("train", "sft", key), problem) for key, problem in problems if problem is not None]


def duplicate_task_names(names: list[str | None]) -> list[tuple[tuple[str | int, ...], str]]:
    """``(tasks[i].name, message)`` for every name already used by an earlier task."""
    seen: dict[str, int] = {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            out.append((("tasks", i, "name"), f"duplicate task name {name!r} (also tasks[{seen[name]}])"))
        else:
            seen[name] = i
    return out


def _partial_cross_checks(located: LocatedYaml) -> list[Issue]:
    """Duplicate task names even when other errors stopped full validation (so all mistakes show at once)."""
    tasks = located.data.get("tasks") if isinstance(located.data, dict) else None
    if not isinstance(tasks, list):
        return []
    names = [t.get("name") if isinstance(t, dict) and isinstance(t.get("name"), str) else None for t in tasks]
    return [located.issue(loc, msg) for loc, msg in duplicate_task_names(names)]
