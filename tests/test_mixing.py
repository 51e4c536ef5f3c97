"""Mixing: seqio rate formulas, largest-remainder targets, stable sampling, upsampling."""

from __future__ import annotations

import math

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
