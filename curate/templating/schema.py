"""The template file schema: pydantic models for ``templates/<family>/<name>.yaml`` (and card-local files).

Owns the field names users write (``family``, ``examples``, ``templates[].id/inputs/system/prompt/
completion/messages/turns/jinja/split/answer_choices/metadata``) and the checks that need no Jinja: id shape,
inputs, the four template forms (``prompt``/``completion``, ``messages``, ``turns`` over list inputs, or one
``jinja`` text split at ``split``).
Compiling and loading live in ``library.py``; ``docs/templates.md`` documents every field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME = r"[a-z0-9][a-z0-9_.\-]*"
DICT_ATTRS = frozenset(n for n in dir(dict) if not n.startswith("_"))
"""Attribute names of a dict: `turn.items` would be the method, so `over` names may not be one of them."""
ID_RE = re.compile(rf"^{NAME}/{NAME}$")
CHOICE_SEP = "|||"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(_Strict):
    """What a template is for (promptsource's metadata plus FLAN's shots)."""

    original_task: bool | None = Field(None, description="Performs the dataset's original task (not an inversion).")
    choices_in_prompt: bool | None = Field(None, description="The answer choices appear in the prompt.")
    metrics: list[str] = Field(default_factory=list, description="Metrics to evaluate with, e.g. accuracy.")
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Languages of the template text.")
    shots: Literal["any", "zero", "few"] = Field(
        "any", description="`any`: the task's few_shot decides; `zero`: never exemplars; `few`: always."
    )
    license: str | None = Field(None, description="License of the template text.")
    reference: str | None = Field(None, description="Where the template comes from.")


class Message(_Strict):
    """One turn of a multi-turn template."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(..., min_length=1)


TURN = "turn"
"""The name a `turns` template reads the current turn under (``turn.<over name>``, ``turn.index``, ...)."""
TURN_KEYS = ("index", "number", "first", "last", "count")
"""What ``turn`` holds besides the ``over`` names: 0-based and 1-based position, first/last flags, turn count."""


class TurnsForm(_Strict):
    """A conversation with one user/assistant pair per element of the `over` list inputs."""

    over: list[str] = Field(
        ..., min_length=1, description="List inputs of equal length; turn i reads their i-th elements."
    )
    user: str = Field(..., min_length=1, description="Each user turn (Jinja; `turn` is the current turn).")
    assistant: str = Field(..., min_length=1, description="Each assistant turn (Jinja; `turn` as in `user`).")


class FewShotFormat(_Strict):
    """How exemplars join the prompt: `inline` text blocks, or `turns` (user/assistant pairs, instruction mode)."""

    style: Literal["inline", "turns"] = "inline"
    separator: str = Field("\n\n", description="Between exemplars, and between the last one and the prompt.")
    answer_separator: str = Field("\n", description="Between an exemplar's prompt and its answer (inline).")


class TemplateSpec(_Strict):
    """One template as written in a template file."""

    id: str = Field(..., description="`family/name`, unique across the library.")
    inputs: list[str] = Field(..., description="Source fields the template reads (exactly its variables).")
    nullable: list[str] = Field(default_factory=list, description="Inputs allowed to be null in a row.")
    system: str | None = Field(None, description="Optional system message (Jinja).")
    prompt: str | None = Field(None, description="The user turn (Jinja).")
    completion: str | None = Field(None, description="The assistant answer (Jinja).")
    messages: list[Message] | None = Field(None, description="Multi-turn instead of prompt/completion.")
    turns: TurnsForm | None = Field(
        None,
        description="Instead of prompt/completion: one user/assistant pair per element of list inputs "
        "(`over`, `user`, `assistant`); a per-row number of turns.",
    )
    jinja: str | None = Field(
        None,
        description="Instead of prompt/completion: one Jinja text rendered whole, then split at `split` into "
        "prompt and completion (promptsource's form, for a separator inside `{% if %}` blocks).",
    )
    split: str | None = Field(
        None, description="With `jinja`: the marker (e.g. `|||`) each row's rendered text must contain exactly once."
    )
    answer_choices: list[str] | str | None = Field(
        None, description="A list, or Jinja rendering to choices separated by `|||`."
    )
    strip: bool = Field(False, description="Strip whitespace around each rendered part (promptsource semantics).")
    few_shot: FewShotFormat = Field(default_factory=FewShotFormat)
    metadata: Metadata = Field(default_factory=Metadata)

    @model_validator(mode="after")
    def _shape(self) -> TemplateSpec:
        if not ID_RE.match(self.id):
            raise ValueError(f"id {self.id!r} must look like `family/name` (lowercase letters, digits, _ . -)")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError("inputs: names repeat")
        if extra := sorted(set(self.nullable) - set(self.inputs)):
            raise ValueError(f"nullable names {extra} that are not in inputs")
        if self.turns is not None:
            self._check_turns(self.turns)
        elif self.jinja is not None or self.split is not None:
            self._check_whole()
        elif self.messages is not None:
            if self.prompt is not None or self.completion is not None or self.system is not None:
                raise ValueError("give either `messages` or `prompt`/`completion` (put a system turn in messages)")
            roles = [m.role for m in self.messages]
            if len(roles) < 2 or roles[-1] != "assistant" or "user" not in roles:
                raise ValueError("messages need a user turn and must end with the assistant turn")
            if "system" in roles[1:]:
                raise ValueError("messages: only the first turn may be the system turn")
            if self.metadata.shots == "few":
                raise ValueError("multi-turn (messages) templates are zero-shot; set metadata.shots to zero or any")
        elif self.prompt is None or self.completion is None:
            missing = "prompt" if self.prompt is None else "completion"
            raise ValueError(
                f"`{missing}` is missing (a template needs prompt and completion, or messages, turns, or jinja with split)"
            )
        if isinstance(self.answer_choices, list) and not self.answer_choices:
            raise ValueError("answer_choices: the list is empty")
        return self

    def _check_turns(self, turns: TurnsForm) -> None:
        """The ``turns`` form: no other form's fields, `over` names are distinct inputs, zero-shot only."""
        other = [n for n in ("prompt", "completion", "messages", "jinja", "split") if getattr(self, n) is not None]
        if other:
            raise ValueError(f"give either `turns` or {', '.join(f'`{n}`' for n in other)}, not both")
        if len(set(turns.over)) != len(turns.over):
            raise ValueError("turns.over: names repeat")
        if missing := [n for n in turns.over if n not in self.inputs]:
            raise ValueError(f"turns.over names {missing} that are not in inputs (list them under `inputs`)")
        reserved = [n for n in turns.over if n in TURN_KEYS or n in DICT_ATTRS]
        if reserved:
            raise ValueError(
                f"turns.over: {reserved} clash with what `turn` holds itself ({', '.join(TURN_KEYS)}, and the "
                "mapping's methods); rename the column with `columns:` in the card"
            )
        if TURN in self.inputs:
            raise ValueError(f"inputs: `{TURN}` is the name a turns template reads the current turn under")
        if self.metadata.shots == "few":
            raise ValueError("multi-turn (turns) templates are zero-shot; set metadata.shots to zero or any")
        if "few_shot" in self.model_fields_set:
            raise ValueError("few_shot does not apply to a turns template (it is zero-shot)")

    def _check_whole(self) -> None:
        """The ``jinja`` + ``split`` form: both given, and neither prompt/completion nor messages."""
        if self.jinja is None:
            raise ValueError("`split` is only for a `jinja` template (the marker its rendered text is split at)")
        if self.split is None or not self.split.strip():
            raise ValueError("`jinja` needs `split`: the marker between prompt and completion, e.g. split: '|||'")
        if self.prompt is not None or self.completion is not None or self.messages is not None:
            raise ValueError("give either `jinja` (with `split`) or `prompt`/`completion` or `messages`, not both")
        if not self.jinja.strip():
            raise ValueError("`jinja` is empty")


class TemplateFile(_Strict):
    """A template file: a family, example rows (rendered by lint and previews), and its templates."""

    family: str = Field(..., pattern=rf"^{NAME}$", description="Family name; every id starts with `family/`.")
    description: str | None = Field(None, description="What the family's inputs mean.")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Fixture rows for lint and show.")
    templates: list[TemplateSpec] = Field(..., min_length=1)
