"""Cron schedules: five fields, parsed once, next fire times computed in UTC. Pure.

    schedule = parse_cron("*/15 9-17 * * mon-fri")
    schedule.next_after(datetime(2026, 1, 5, 9, 7, tzinfo=UTC))  # -> 09:15 that day

Fields are minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec) and day of
week (0-7 or sun-sat, 0 and 7 both Sunday), each ``*``, a value, a range ``a-b``, a list
``a,b`` and a step ``*/n`` or ``a-b/n``. As in classic cron, when both day fields are
restricted a day matching either fires. ``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and
``@yearly`` are accepted. Times are UTC: there is no daylight-saving ambiguity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from wayport.core.errors import ConfigError

__all__ = ["CronSchedule", "parse_cron"]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  #: 0 = Sunday
    any_day: bool  #: day of month was ``*``
    any_weekday: bool  #: day of week was ``*``

    def matches_day(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def next_after(self, when: datetime) -> datetime:
        """The first fire time strictly after ``when`` (naive times are taken as UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        t = when.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self.matches_day(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        raise ConfigError(f"cron {self.expression!r} never fires")

    def next_after_ts(self, timestamp: float) -> float:
        """``next_after`` on epoch seconds."""
        return self.next_after(datetime.fromtimestamp(timestamp, UTC)).timestamp()


def _value(text: str, low: int, names: list[str] | None, where: str) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + low if low == 1 else names.index(text.lower())
    if not text.isdigit():
        raise ConfigError(f"{where}: {text!r} is not a number")
    return int(text)


def _field(text: str, name: str, low: int, high: int, names: list[str] | None) -> set[int]:
    where = f"cron {name}"
    found: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ConfigError(f"{where}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            start, end = _value(a, low, names, where), _value(b, low, names, where)
        else:
            start = _value(body, low, names, where)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ConfigError(f"{where}: {part!r} is outside {low}-{high}")
        found.update(range(start, end + 1, step))
    return found


def parse_cron(expression: str) -> CronSchedule:
    """Parse a five-field expression or an ``@alias``; ``ConfigError`` saying which field is
    wrong."""
    text = _ALIASES.get(expression.strip().lower(), expression.strip())
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"cron {expression!r}: five fields (minute hour day month weekday), got {len(parts)}"
        )
    values = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = {0 if d == 7 else d for d in values[4]}
    return CronSchedule(
        expression=expression,
        minutes=frozenset(values[0]),
        hours=frozenset(values[1]),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=frozenset(weekdays),
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
