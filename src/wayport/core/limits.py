"""Rate limits and budgets as arithmetic: data in, data out, time passed in as ``now``.

A request is admitted by *reserving* what it may use at most, on every counter that applies to
it, all at once or not at all; when it ends the reservation is *settled* with what it really
used (or released, when it failed). Three kinds of counter cover every limit::

    RATE        requests or tokens per minute: a leaky bucket; ``used`` drains at limit/period
    CONCURRENT  runs in flight: ``used`` goes up on reserve, down on settle
    WINDOW      spend per day or month: ``used`` sums within a calendar window (UTC), whose id
                is part of the counter's key, so a new day starts at zero

    charges = plan([(Subject("key", "k1"), Limits(rpm=60, spend_per_day=5.0))],
                   Ask(tokens=1200, cost=0.012), now=time.time())
    counter, retry_after = take(None, charges[0], now)   # retry_after None: admitted

Reserving the maximum up front is what keeps concurrent requests honest: however many race
for the last cents of a budget, each must fit its whole worst case into what is left, so the
budget is overspent by at most what one request's actual use exceeds its estimate.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wayport.core.errors import BudgetExceeded, RateLimited

MINUTE = 60.0


class CounterKind(enum.StrEnum):
    RATE = "rate"
    CONCURRENT = "concurrent"
    WINDOW = "window"


class Dimension(enum.StrEnum):
    RPM = "rpm"
    TPM = "tpm"
    CONCURRENT_RUNS = "concurrent_runs"
    SPEND_PER_DAY = "spend_per_day"
    SPEND_PER_MONTH = "spend_per_month"


RATE_LIMITED = "rate_limit_exceeded"
BUDGET_EXCEEDED = "budget_exceeded"


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one subject may use; ``None``: unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrent_runs: int | None = None
    spend_per_day: float | None = None  #: dollars
    spend_per_month: float | None = None

    def merged(self, override: Limits) -> Limits:
        """These limits with every value ``override`` sets replacing ours."""
        return Limits(
            rpm=override.rpm if override.rpm is not None else self.rpm,
            tpm=override.tpm if override.tpm is not None else self.tpm,
            concurrent_runs=(
                override.concurrent_runs
                if override.concurrent_runs is not None
                else self.concurrent_runs
            ),
            spend_per_day=(
                override.spend_per_day if override.spend_per_day is not None else self.spend_per_day
            ),
            spend_per_month=(
                override.spend_per_month
                if override.spend_per_month is not None
                else self.spend_per_month
            ),
        )

    @property
    def empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.rpm,
                self.tpm,
                self.concurrent_runs,
                self.spend_per_day,
                self.spend_per_month,
            )
        )


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a limit applies to: ``tenant``, ``key``, ``user`` or ``agent``, and its id."""

    scope: str
    id: str

    @property
    def label(self) -> str:
        return f"{self.scope} {self.id}"

    @property
    def slug(self) -> str:
        # counter keys stay short and printable whatever an id holds
        if len(self.id) <= 64 and self.id.isprintable() and ":" not in self.id:
            return f"{self.scope}:{self.id}"
        return f"{self.scope}:#{hashlib.sha256(self.id.encode()).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask:
    """What a request may use at most."""

    requests: int = 1
    tokens: int = 0
    cost: float = 0.0
    run: bool = False  #: an agent run: counts against ``concurrent_runs``


@dataclass(frozen=True, slots=True, kw_only=True)
class Charge:
    """One counter a reservation moves by ``amount``."""

    key: str  #: the counter, unique within the tenant
    kind: CounterKind
    dimension: Dimension
    limit: float
    amount: float
    subject: str = ""  #: for messages: "key k1"
    period: float = MINUTE  #: RATE: seconds in which ``limit`` drains
    expires: float = 0.0  #: WINDOW: when the window ends (epoch seconds); 0 for the others

    @property
    def drain(self) -> float:
        """Units per second that leave the counter by themselves."""
        return self.limit / self.period if self.kind is CounterKind.RATE else 0.0

    @property
    def code(self) -> str:
        return BUDGET_EXCEEDED if self.kind is CounterKind.WINDOW else RATE_LIMITED

    def with_amount(self, amount: float) -> Charge:
        return Charge(
            key=self.key,
            kind=self.kind,
            dimension=self.dimension,
            limit=self.limit,
            amount=amount,
            subject=self.subject,
            period=self.period,
            expires=self.expires,
        )


@dataclass(frozen=True, slots=True)
class Counter:
    used: float
    at: float  #: when ``used`` was last written


def current(counter: Counter | None, charge: Charge, now: float) -> float:
    """What the counter holds at ``now`` (a RATE counter drains while time passes)."""
    if counter is None:
        return 0.0
    if charge.kind is not CounterKind.RATE:
        return counter.used
    return max(0.0, counter.used - max(0.0, now - counter.at) * charge.drain)


def take(counter: Counter | None, charge: Charge, now: float) -> tuple[Counter, float | None]:
    """Reserve ``charge.amount``: the new counter and ``None``, or the counter unchanged and
    the seconds after which the same reservation could fit."""
    used = current(counter, charge, now)
    if used + charge.amount <= charge.limit + 1e-9:
        return Counter(used + charge.amount, now), None
    unchanged = counter if counter is not None else Counter(0.0, now)
    return unchanged, retry_after(used, charge, now)


def retry_after(used: float, charge: Charge, now: float) -> float:
    if charge.kind is CounterKind.RATE:
        if charge.amount > charge.limit:
            return charge.period  # can never fit; a minute is as good an answer as any
        return max(0.0, (used + charge.amount - charge.limit) / charge.drain)
    if charge.kind is CounterKind.WINDOW:
        return max(1.0, charge.expires - now)
    return 1.0  # a run in flight may end at any moment


def adjust(counter: Counter | None, charge: Charge, delta: float, now: float) -> Counter:
    """Move the counter by ``delta`` whatever the limit (settling never refuses); it never goes
    below zero."""
    return Counter(max(0.0, current(counter, charge, now) + delta), now)


def refusal_message(charge: Charge, wait: float) -> str:
    when = f"retry in {math.ceil(wait)}s"
    limit = charge.limit
    what = {
        Dimension.RPM: f"{limit:g} requests per minute",
        Dimension.TPM: f"{limit:g} tokens per minute",
        Dimension.CONCURRENT_RUNS: f"{limit:g} concurrent runs",
        Dimension.SPEND_PER_DAY: f"${limit:g} per day",
        Dimension.SPEND_PER_MONTH: f"${limit:g} per month",
    }[charge.dimension]
    if charge.kind is CounterKind.WINDOW:
        return f"Budget of {what} for {charge.subject} is spent; it renews in {math.ceil(wait)}s"
    if charge.kind is CounterKind.RATE and charge.amount > charge.limit:
        return (
            f"The request asks for {charge.amount:g}, more than the limit of {what} for "
            f"{charge.subject} allows at all; lower max_tokens"
        )
    return f"Rate limit of {what} for {charge.subject} reached; {when}"


def refusal(charge: Charge, counter: Counter | None, now: float) -> RateLimited:
    """The error a refused ``charge`` raises: 429 with ``Retry-After``."""
    wait = retry_after(current(counter, charge, now), charge, now)
    cls = BudgetExceeded if charge.kind is CounterKind.WINDOW else RateLimited
    return cls(refusal_message(charge, wait), retry_after=wait)


# --- windows ----------------------------------------------------------------------------------


def day_window(now: float) -> tuple[str, float]:
    """The UTC day holding ``now``: its id and when it ends."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.strftime("%Y-%m-%d"), day.timestamp() + 86_400


def month_window(now: float) -> tuple[str, float]:
    start = datetime.fromtimestamp(now, UTC).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else (start.replace(month=start.month + 1))
    )
    return start.strftime("%Y-%m"), following.timestamp()


# --- planning ---------------------------------------------------------------------------------


def plan(subjects: Sequence[tuple[Subject, Limits]], ask: Ask, now: float) -> list[Charge]:
    """Every counter ``ask`` moves, for every subject with a limit on it."""
    day, day_ends = day_window(now)
    month, month_ends = month_window(now)
    charges: list[Charge] = []
    for subject, limits in subjects:
        wanted = (
            (Dimension.RPM, CounterKind.RATE, limits.rpm, ask.requests, "", 0.0),
            (Dimension.TPM, CounterKind.RATE, limits.tpm, ask.tokens, "", 0.0),
            (
                Dimension.CONCURRENT_RUNS,
                CounterKind.CONCURRENT,
                limits.concurrent_runs,
                int(ask.run),
                "",
                0.0,
            ),
            (
                Dimension.SPEND_PER_DAY,
                CounterKind.WINDOW,
                limits.spend_per_day,
                ask.cost,
                f":{day}",
                day_ends,
            ),
            (
                Dimension.SPEND_PER_MONTH,
                CounterKind.WINDOW,
                limits.spend_per_month,
                ask.cost,
                f":{month}",
                month_ends,
            ),
        )
        for dimension, kind, limit, amount, suffix, expires in wanted:
            # what costs nothing (a local model) is never refused by a budget
            if limit is None or amount <= 0:
                continue
            charges.append(
                Charge(
                    key=f"{subject.slug}:{dimension.value}{suffix}",
                    kind=kind,
                    dimension=dimension,
                    limit=float(limit),
                    amount=float(amount),
                    subject=subject.label,
                    expires=expires,
                )
            )
    return charges


def settlement(
    charges: Sequence[Charge], *, tokens: int | None, cost: float | None
) -> list[tuple[Charge, float]]:
    """The adjustment each reserved charge needs once the request is over: ``tokens`` and
    ``cost`` are what it used (``None``: release the reservation, the request failed before
    using anything). Requests stay counted; runs in flight are always given back."""
    moves: list[tuple[Charge, float]] = []
    for charge in charges:
        if charge.dimension is Dimension.TPM:
            used = tokens if tokens is not None else 0
            delta = used - charge.amount
        elif charge.kind is CounterKind.WINDOW:
            spent = cost if cost is not None else 0.0
            delta = spent - charge.amount
        elif charge.kind is CounterKind.CONCURRENT:
            delta = -charge.amount
        else:
            continue
        if delta:
            moves.append((charge, delta))
    return moves


def estimate_prompt_tokens(text_chars: int, messages: int) -> int:
    """An upper estimate of a prompt's tokens from its size: about three characters a token
    (English runs near four), plus a few tokens of framing per message."""
    return text_chars // 3 + 1 + 4 * messages
