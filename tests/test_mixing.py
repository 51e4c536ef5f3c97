"""Mixing: seqio rate formulas, largest-remainder targets, stable sampling, upsampling."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtune.curate.card.schema import Mixture, Source, Task
from cardtune.curate.errors import UserInputError
from cardtune.curate.mixing.mixture import apply_mixture, largest_remainder, plan_mixture, sample_task, task_rate


def tasks(weights: list[float], held: tuple[int, ...] = ()) -> list[Task]:
    return [
        Task(name=f"t{i}", source=Source(path="x.jsonl"), weight=w, held_out=i in held) for i, w in enumerate(weights)
    ]


def pool(name: str, n: int) -> pl.DataFrame:
    return pl.DataFrame({"task": [name] * n, "source_ref": [f"{name}:{i}" for i in range(n)], "v": list(range(n))})


@pytest.mark.parametrize(
    ("spec", "n", "weight", "expected"),
    [
        (Mixture(strategy="fixed"), 500, 3.0, 3.0),
        (Mixture(strategy="examples_proportional"), 500, 1.0, 500.0),
        (Mixture(strategy="examples_proportional", cap=100), 500, 1.0, 100.0),
        (Mixture(strategy="examples_proportional", scale=2.0, cap=700), 500, 1.0, 700.0),
        (Mixture(strategy="examples_proportional", scale=0.5), 500, 2.0, 500.0),
        (Mixture(strategy="temperature", temperature=2.0), 400, 1.0, 20.0),
        (Mixture(strategy="temperature", temperature=2.0, cap=100), 400, 1.0, 10.0),
        (Mixture(strategy="temperature", temperature=1.0), 400, 1.0, 400.0),
    ],
)
def test_seqio_rates(spec: Mixture, n: int, weight: float, expected: float) -> None:
    rate, _ = task_rate(n, weight, spec)
    assert math.isclose(rate, expected)


def test_cap_binds_is_reported() -> None:
    assert task_rate(500, 1.0, Mixture(cap=100))[1] is True
    assert task_rate(50, 1.0, Mixture(cap=100))[1] is False


def test_largest_remainder_example() -> None:
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]
    assert largest_remainder([0.5, 0.25, 0.25], 7) == [3, 2, 2]  # 3.5, 1.75, 1.75: larger remainders first


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.01, max_value=1e4, allow_nan=False), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=100_000),
)
def test_targets_sum_to_total_and_stay_within_one(rates: list[float], total: int) -> None:
    targets = largest_remainder(rates, total)
    assert sum(targets) == total
    for rate, target in zip(rates, targets, strict=True):
        assert abs(target - rate / sum(rates) * total) < 1 + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=2, max_value=300), min_size=1, max_size=6),  # total <= 1000x every pool
    st.lists(st.floats(min_value=0.1, max_value=5), min_size=6, max_size=6),
    st.integers(min_value=1, max_value=2000),
    st.sampled_from(["fixed", "examples_proportional", "temperature"]),
)
def test_realized_counts_match_plan(sizes: list[int], weights: list[float], total: int, strategy: str) -> None:
    ts = tasks(weights[: len(sizes)])
    spec = Mixture(strategy=strategy, total=total, temperature=2.0)  # type: ignore[arg-type]
    available = {t.name: n for t, n in zip(ts, sizes, strict=True)}
    plans = plan_mixture(ts, available, dict.fromkeys(available, 10.0), spec)
    mixed = apply_mixture({t.name: pool(t.name, n) for t, n in zip(ts, sizes, strict=True)}, plans, seed=7)
    realized = dict(mixed.group_by("task").len().iter_rows())
    assert mixed.height == total
    for p in plans:
        assert realized.get(p.task, 0) == p.target
        exact = p.share * total
        assert abs(p.target - exact) <= 1


def test_default_total_is_capped_pool() -> None:
    ts = tasks([1.0, 1.0])
    plans = plan_mixture(ts, {"t0": 1000, "t1": 10}, {"t0": 1.0, "t1": 1.0}, Mixture(cap=100))
    assert [p.target for p in plans] == [100, 10]  # total = sum of capped sizes; rates 100 : 10
    assert plans[0].cap_binds and not plans[1].cap_binds
    assert not any(p.upsampled for p in plans)


def test_held_out_tasks_are_not_mixed() -> None:
    plans = plan_mixture(tasks([1.0, 1.0], held=(1,)), {"t0": 10, "t1": 10}, {"t0": 1, "t1": 1}, Mixture())
    assert [p.task for p in plans] == ["t0"]


def test_upsampling_whole_repeats_plus_remainder() -> None:
    plans = plan_mixture(tasks([25.0]), {"t0": 10}, {"t0": 1.0}, Mixture(strategy="count"))
    (plan,) = plans
    assert (plan.target, plan.repeats, plan.remainder, plan.upsampled) == (25, 2, 5, True)
    sampled = sample_task(pool("t0", 10), plan, seed=1)
    counts = sampled.group_by("source_ref").len()["len"].sort().to_list()
    assert counts == [2] * 5 + [3] * 5
    assert sampled["_repeat"].value_counts().sort("_repeat")["count"].to_list() == [10, 10, 5]


def test_upsampling_can_be_forbidden() -> None:
    with pytest.raises(UserInputError, match="upsample"):
        plan_mixture(tasks([25.0]), {"t0": 10}, {"t0": 1.0}, Mixture(strategy="count", upsample=False))


def test_sampling_is_stable_when_other_weights_change() -> None:
    pools = {"t0": pool("t0", 200), "t1": pool("t1", 200)}
    spec = Mixture(strategy="count")
    a = apply_mixture(pools, plan_mixture(tasks([50.0, 10.0]), {"t0": 200, "t1": 200}, {}, spec), seed=3)
    b = apply_mixture(pools, plan_mixture(tasks([50.0, 90.0]), {"t0": 200, "t1": 200}, {}, spec), seed=3)
    rows_a = set(a.filter(pl.col("task") == "t0")["source_ref"])
    rows_b = set(b.filter(pl.col("task") == "t0")["source_ref"])
    assert rows_a == rows_b
    # a larger target keeps the rows a smaller one had (prefix-stable)
    small = set(a.filter(pl.col("task") == "t1")["source_ref"])
    large = set(b.filter(pl.col("task") == "t1")["source_ref"])
    assert small <= large


def test_count_strategy_rejects_non_integers_at_load() -> None:
    from cardtune.curate.card.load import card_from_located
    from cardtune.curate.card.yamlsrc import load_located

    text = "name: x\nmixture: {strategy: count}\ntasks:\n  - name: a\n    source: {path: a}\n    weight: 2.5\n"
    with pytest.raises(UserInputError, match=r":6: tasks\[0\].weight: with strategy `count`"):
        card_from_located(load_located(text, "c.yaml"), None)


def test_total_tokens_converts_to_examples() -> None:
    spec = Mixture(strategy="fixed", total_tokens=3000, tokenizer="words")
    plans = plan_mixture(tasks([1.0, 1.0]), {"t0": 500, "t1": 500}, {"t0": 10.0, "t1": 20.0}, spec)
    # equal rates; mean tokens per example 15 -> 200 examples, split 100 / 100 -> 1000 + 2000 tokens
    assert [p.target for p in plans] == [100, 100]
    assert sum(p.estimated_tokens for p in plans) == 3000


def test_a_total_far_beyond_the_pools_is_refused_with_the_repeat_factor() -> None:
    from cardtune.curate.card.schema import Mixture, Task
    from cardtune.curate.mixing.mixture import MAX_REPEAT, plan_mixture

    tasks = [Task(name="a", source={"path": "a.jsonl"}), Task(name="b", source={"path": "b.jsonl"})]  # type: ignore[arg-type]
    sizes = {"a": 10, "b": 10}
    ok = plan_mixture(tasks, sizes, {"a": 1.0, "b": 1.0}, Mixture(total=2 * 10 * MAX_REPEAT))
    assert [p.repeats for p in ok] == [MAX_REPEAT, MAX_REPEAT]
    with pytest.raises(UserInputError, match=r"repeat factor of 500,000x"):
        plan_mixture(tasks, sizes, {"a": 1.0, "b": 1.0}, Mixture(total=10**7))


# seqio's mixing_rate_num_examples: rate = n * scale, then min(., cap), then ** (1 / T); times the task weight.
# Expected values worked out by hand from that formula.
@pytest.mark.parametrize(
    ("strategy", "n", "scale", "cap", "temperature", "weight", "expected", "binds"),
    [
        ("temperature", 400, 0.25, None, 2.0, 1.0, 10.0, False),  # sqrt(400 * 0.25) = sqrt(100)
        ("temperature", 50, 4.0, 100, 2.0, 1.0, 10.0, True),  # 50 * 4 = 200 -> cap 100 -> sqrt = 10
        ("temperature", 300, 0.5, 200, 1.0, 1.5, 225.0, False),  # 150 is under the cap: 150 * 1.5
        ("temperature", 1000, 2.0, 500, 2.0, 3.0, 67.08203932499369, True),  # sqrt(500) * 3
        ("temperature", 90, 0.1, None, 3.0, 2.0, 4.160167646103808, False),  # cbrt(9) * 2
        ("temperature", 10_000, 1.0, 256, 4.0, 0.5, 2.0, True),  # 256 ** (1/4) * 0.5
        ("examples_proportional", 500, 0.5, 200, 3.0, 2.0, 400.0, True),  # min(250, 200) * 2 (T unused)
        ("examples_proportional", 300, 3.0, 1000, 1.0, 0.5, 450.0, False),  # 900 * 0.5
        ("examples_proportional", 120, 1.0, None, 1.0, 1.0, 120.0, False),
        ("fixed", 500, 2.0, 10, 2.0, 3.0, 3.0, False),  # the weight, nothing else
        ("count", 500, 2.0, 10, 2.0, 7.0, 7.0, False),
    ],
)
def test_rates_follow_seqio_mixing_rate_num_examples(
    strategy: str,
    n: int,
    scale: float,
    cap: int | None,
    temperature: float,
    weight: float,
    expected: float,
    binds: bool,
) -> None:
    spec = Mixture(strategy=strategy, scale=scale, cap=cap, temperature=temperature)  # type: ignore[arg-type]
    rate, cap_binds = task_rate(n, weight, spec)
    assert math.isclose(rate, expected, rel_tol=1e-12)
    assert cap_binds is binds


def test_temperature_plan_applies_scale_before_the_exponent() -> None:
    spec = Mixture(strategy="temperature", scale=0.25, temperature=2.0, total=30)
    plans = plan_mixture(tasks([1.0, 1.0]), {"t0": 400, "t1": 100}, {"t0": 1.0, "t1": 1.0}, spec)
    assert [p.rate for p in plans] == [10.0, 5.0]  # sqrt(100), sqrt(25)
    assert [p.target for p in plans] == [20, 10]


def _mixture_card(mixture: str) -> str:
    return f"name: x\nmixture: {mixture}\ntasks:\n  - name: a\n    source: {{path: a.jsonl}}\n    weight: 2\n"


@pytest.mark.parametrize(
    ("mixture", "warned"),
    [
        ("{strategy: examples_proportional, temperature: 2.0}", ["temperature"]),
        ("{strategy: examples_proportional, temperature: 1.0, scale: 2, cap: 10}", []),  # 1.0 is the default
        ("{strategy: temperature, temperature: 2.0, scale: 0.5, cap: 10}", []),
        ("{strategy: fixed, scale: 2.0}", ["scale"]),
        ("{strategy: fixed, cap: 10}", []),  # sets the default total
        ("{strategy: fixed, cap: 10, total: 100}", ["cap"]),
        ("{strategy: fixed, scale: 1.0, temperature: 1.0}", []),
        ("{strategy: count, cap: 10, scale: 3, temperature: 0.5}", ["temperature", "scale", "cap"]),
    ],
)
def test_unused_mixture_options_are_warnings(mixture: str, warned: list[str]) -> None:
    from cardtune.curate.card.load import card_from_located, unused_option_warnings
    from cardtune.curate.card.yamlsrc import load_located

    card = card_from_located(load_located(_mixture_card(mixture), "c.yaml"), None)  # loads: warnings are not errors
    warnings = unused_option_warnings(card)
    assert sorted(w.loc[-1] for w in warnings) == sorted(warned)
    for w in warnings:
        assert w.loc[0] == "mixture" and w.line == 2 and w.message.startswith("ignored: ")
        assert f":2: mixture.{w.loc[-1]}: ignored: " in str(w)


def test_cli_validate_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cardtune.cli import app

    runner = CliRunner()
    target = tmp_path / "mine.yaml"
    assert runner.invoke(app, ["init", "mine", "--output", str(target)]).exit_code == 0
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace("  seed: 1234\n", "  temperature: 3.0\n  seed: 1234\n", 1), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(target)])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "mixture.temperature" in result.output
    assert "ok" in result.output
