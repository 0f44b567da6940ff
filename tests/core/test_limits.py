"""The limit arithmetic: buckets drain, windows renew, reservations fit or say when they will."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wayport.core.errors import BudgetExceeded, RateLimited
from wayport.core.limits import (
    Ask,
    Charge,
    CounterKind,
    Dimension,
    Limits,
    Subject,
    adjust,
    day_window,
    estimate_prompt_tokens,
    month_window,
    plan,
    refusal,
    settlement,
    take,
)
from wayport.core.pricing import FREE, Price, PriceTable

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC).timestamp()


def rate(limit: float, amount: float = 1) -> Charge:
    return Charge(
        key="k",
        kind=CounterKind.RATE,
        dimension=Dimension.RPM,
        limit=limit,
        amount=amount,
        subject="key k1",
    )


def test_a_bucket_admits_up_to_its_limit_then_says_when() -> None:
    counter = None
    for _ in range(60):
        counter, wait = take(counter, rate(60), NOW)
        assert wait is None
    after, wait = take(counter, rate(60), NOW)
    assert after == counter
    assert wait == pytest.approx(1.0)  # 60 per minute drains one a second
    counter, wait = take(counter, rate(60), NOW + 1.0)
    assert wait is None


def test_a_request_larger_than_the_limit_never_fits() -> None:
    _, wait = take(None, rate(100, amount=500), NOW)
    assert wait == 60.0
    error = refusal(rate(100, amount=500), None, NOW)
    assert "lower max_tokens" in error.message


def test_windows_are_calendar_days_and_months_in_utc() -> None:
    assert day_window(NOW) == ("2025-06-15", datetime(2025, 6, 16, tzinfo=UTC).timestamp())
    assert month_window(NOW) == ("2025-06", datetime(2025, 7, 1, tzinfo=UTC).timestamp())
    december = datetime(2025, 12, 31, 23, 59, tzinfo=UTC).timestamp()
    assert month_window(december) == ("2025-12", datetime(2026, 1, 1, tzinfo=UTC).timestamp())


def test_plan_charges_every_subject_with_a_limit() -> None:
    subjects = [
        (Subject("tenant", "acme"), Limits(spend_per_day=5.0, spend_per_month=50.0)),
        (Subject("key", "k1"), Limits(rpm=10, tpm=1000)),
        (Subject("agent", "support"), Limits(concurrent_runs=2)),
        (Subject("user", "u1"), Limits()),
    ]
    charges = plan(subjects, Ask(tokens=300, cost=0.25, run=True), NOW)
    assert [(c.key, c.amount) for c in charges] == [
        ("tenant:acme:spend_per_day:2025-06-15", 0.25),
        ("tenant:acme:spend_per_month:2025-06", 0.25),
        ("key:k1:rpm", 1.0),
        ("key:k1:tpm", 300.0),
        ("agent:support:concurrent_runs", 1.0),
    ]
    # free requests move no budget
    assert [c.dimension for c in plan(subjects[:1], Ask(cost=0.0), NOW)] == []


def test_odd_ids_become_short_printable_keys() -> None:
    weird = Subject("user", "a:b\n" + "x" * 300)
    assert weird.slug.startswith("user:#") and len(weird.slug) < 50
    assert Subject("key", "k1").slug == "key:k1"


def test_settlement_refunds_the_unused_estimate_and_returns_runs() -> None:
    subjects = [
        (Subject("key", "k1"), Limits(rpm=10, tpm=1000, spend_per_day=1.0, concurrent_runs=1))
    ]
    charges = plan(subjects, Ask(tokens=300, cost=0.3, run=True), NOW)
    moves = {c.dimension: d for c, d in settlement(charges, tokens=120, cost=0.1)}
    assert moves == {
        Dimension.TPM: -180,
        Dimension.SPEND_PER_DAY: pytest.approx(-0.2),
        Dimension.CONCURRENT_RUNS: -1.0,
    }
    released = {c.dimension: d for c, d in settlement(charges, tokens=None, cost=None)}
    assert released[Dimension.TPM] == -300 and released[Dimension.SPEND_PER_DAY] == -0.3


def test_adjust_never_goes_below_zero_and_ignores_the_limit() -> None:
    charge = rate(10)
    assert adjust(None, charge, -5, NOW).used == 0
    assert adjust(None, charge, 50, NOW).used == 50


def test_a_spent_budget_refuses_until_the_window_ends() -> None:
    charge = Charge(
        key="b",
        kind=CounterKind.WINDOW,
        dimension=Dimension.SPEND_PER_DAY,
        limit=1.0,
        amount=0.5,
        subject="tenant acme",
        expires=day_window(NOW)[1],
    )
    counter, wait = take(None, charge, NOW)
    counter, wait = take(counter, charge, NOW)
    assert wait is None and counter.used == 1.0
    _, wait = take(counter, charge, NOW)
    assert wait == pytest.approx(12 * 3600)
    error = refusal(charge, counter, NOW)
    assert isinstance(error, BudgetExceeded) and isinstance(error, RateLimited)
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert error.retry_after == pytest.approx(12 * 3600)


def test_limits_merge_overrides() -> None:
    merged = Limits(rpm=60, tpm=1000).merged(Limits(tpm=10, spend_per_day=2.0))
    assert merged == Limits(rpm=60, tpm=10, spend_per_day=2.0)
    assert Limits().empty and not merged.empty


def test_prompt_estimate_is_generous() -> None:
    text = "hello world " * 100  # 1200 characters, about 200 real tokens
    assert estimate_prompt_tokens(len(text), 1) >= 300


def test_prices() -> None:
    table = PriceTable.default()
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.price("gpt-4o-mini-2024-07-18") == Price(input=0.15, output=0.6)
    assert table.price("gpt-4o") == Price(input=2.5, output=10.0)
    assert table.price("openai/gpt-4o") == Price(input=2.5, output=10.0)
    assert table.price("claude-3-5-haiku-20241022").output == 4.0
    assert table.price("smollm2") == FREE and table.find("smollm2") is None
    mine = table.with_prices({"smollm2": Price(input=1.0, output=2.0)})
    assert mine.cost("smollm2", 500_000, 0) == 0.5
    with pytest.raises(ValueError, match="finite"):
        Price(input=-1.0)
