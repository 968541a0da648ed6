"""The scheduler's jobs and their APScheduler triggers, built from Settings (or run-time overrides).

| job id                         | trigger                                                          |
|--------------------------------|------------------------------------------------------------------|
| aivo_main_brain_daily          | cron MAIN_BRAIN_TRAINING_SCHEDULE (default "0 2 * * *")          |
| drift_monitor                  | every DRIFT_CHECK_INTERVAL_HOURS (6)                              |
| weekly_full_retraining         | WEEKLY_RETRAINING_DAY (sunday) at WEEKLY_RETRAINING_HOUR (3):00   |
| adaptive_training_check        | every AIVO_ADAPTIVE_CHECK_INTERVAL_HOURS (2)                      |
| federated_aggregation_weekly   | cron AIVO_FEDERATED_AGGREGATION_SCHEDULE (default "0 4 * * sun")  |

All in AIVO_TIMEZONE (default UTC). Interval jobs count from a fixed anchor (Monday 2000-01-03
00:00 in that timezone), not from the moment a process starts, so every scheduler process agrees
on the same firing times (6 h: 00:00, 06:00, 12:00, 18:00) and a firing can be recorded once.

Cron expressions are standard five-field crontab: the day of week counts 0 (or 7) = Sunday. This
module translates it for APScheduler, whose own numbering starts at Monday = 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aivo.config import Settings
from aivo.errors import ConfigError, DataError, NotFoundError

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # standard cron order, 0 = Sunday
_FULL_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
INTERVAL_ANCHOR = (2000, 1, 3)  # a Monday


@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str
    setting: str  # the variable that configures it


JOB_SPECS: tuple[JobSpec, ...] = (
    JobSpec("aivo_main_brain_daily", "AIVO Main Brain Daily Training", "MAIN_BRAIN_TRAINING_SCHEDULE"),
    JobSpec("drift_monitor", "Model Drift Monitoring", "DRIFT_CHECK_INTERVAL_HOURS"),
    JobSpec("weekly_full_retraining", "Weekly Full Model Retraining", "WEEKLY_RETRAINING_DAY/HOUR"),
    JobSpec("adaptive_training_check", "Adaptive Training Check", "AIVO_ADAPTIVE_CHECK_INTERVAL_HOURS"),
    JobSpec("federated_aggregation_weekly", "Weekly Federated Aggregation", "AIVO_FEDERATED_AGGREGATION_SCHEDULE"),
)
JOB_IDS = tuple(spec.id for spec in JOB_SPECS)


def job_spec(job_id: str) -> JobSpec:
    for spec in JOB_SPECS:
        if spec.id == job_id:
            return spec
    raise NotFoundError(f"unknown scheduler job {job_id!r}; jobs: {', '.join(JOB_IDS)}")


def resolve_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"AIVO_TIMEZONE {name!r} is not a known IANA time zone (e.g. UTC, America/Chicago)") from None


def _day_numbers(field: str) -> set[int]:
    """Standard cron day-of-week field -> day numbers (0 = Sunday)."""
    days: set[int] = set()
    for part in field.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {part!r}")
        if body == "*":
            low, high = 0, 6
        else:
            low_text, _, high_text = body.partition("-")
            low = _day_number(low_text)
            high = _day_number(high_text) if high_text else (6 if step_text else low)
            if high < low and high == 0:  # "5-0" / "fri-sun": up to Sunday
                high = 7
        if high < low:
            raise ValueError(f"range {body!r} runs backwards")
        days.update(d % 7 for d in range(low, high + 1, step))
    return days


def _day_number(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if not 0 <= value <= 7:
            raise ValueError(f"day of week {value} is outside 0-7")
        return value
    for number, short in enumerate(_DAY_NAMES):
        if text in (short, _FULL_DAY_NAMES[number]):
            return number
    raise ValueError(f"unknown day of week {text!r}")


def cron_trigger(expression: str, *, timezone: ZoneInfo, name: str = "cron expression") -> CronTrigger:
    """A CronTrigger from a standard 5-field crontab expression; `DataError` naming `name` if invalid."""
    fields = (expression or "").split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields (minute hour day month day-of-week), got {len(fields)}")
        minute, hour, day, month, dow = fields
        if dow != "*":
            days = _day_numbers(dow)
            dow = ",".join(_DAY_NAMES[d] for d in sorted(days)) if len(days) < 7 else "*"
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone)
    except ValueError as exc:
        raise DataError(f"{name} {expression!r} is not a valid cron expression: {exc}") from None


def interval_trigger(hours: float, *, timezone: ZoneInfo, name: str = "interval") -> IntervalTrigger:
    if not hours > 0:
        raise DataError(f"{name} must be a positive number of hours, got {hours!r}")
    anchor = datetime(*INTERVAL_ANCHOR, tzinfo=timezone)
    return IntervalTrigger(seconds=round(hours * 3600, 3), start_date=anchor, timezone=timezone)


def trigger_from_override(override: Mapping[str, Any], *, timezone: ZoneInfo, job_id: str) -> BaseTrigger:
    """{"cron": "0 3 * * *"} or {"interval_hours": 4}."""
    keys = set(override)
    if keys == {"cron"}:
        return cron_trigger(str(override["cron"]), timezone=timezone, name=f"the schedule of {job_id}")
    if keys == {"interval_hours"}:
        value = override["interval_hours"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"interval_hours of {job_id} must be a number, got {value!r}")
        return interval_trigger(float(value), timezone=timezone, name=f"interval_hours of {job_id}")
    raise DataError(f"a schedule is either {{\"cron\": \"m h dom mon dow\"}} or {{\"interval_hours\": N}}, "
                    f"got {dict(override)!r}")


def build_triggers(settings: Settings, overrides: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> dict[str, BaseTrigger]:
    """job id -> trigger. Invalid settings raise `ConfigError` (the service cannot start with them)."""
    tz = resolve_timezone(settings.timezone)
    try:
        triggers: dict[str, BaseTrigger] = {
            "aivo_main_brain_daily": cron_trigger(settings.main_brain_training_schedule, timezone=tz,
                                                  name="MAIN_BRAIN_TRAINING_SCHEDULE"),
            "drift_monitor": interval_trigger(settings.drift_check_interval_hours, timezone=tz,
                                              name="DRIFT_CHECK_INTERVAL_HOURS"),
            "weekly_full_retraining": CronTrigger(day_of_week=settings.weekly_retraining_day[:3],
                                                  hour=settings.weekly_retraining_hour, minute=0, timezone=tz),
            "adaptive_training_check": interval_trigger(settings.adaptive_check_interval_hours, timezone=tz,
                                                        name="AIVO_ADAPTIVE_CHECK_INTERVAL_HOURS"),
            "federated_aggregation_weekly": cron_trigger(settings.federated_aggregation_schedule, timezone=tz,
                                                         name="AIVO_FEDERATED_AGGREGATION_SCHEDULE"),
        }
    except DataError as exc:
        raise ConfigError(exc.message) from None
    for job_id, override in (overrides or {}).items():
        if job_id in triggers and override:
            triggers[job_id] = trigger_from_override(override, timezone=tz, job_id=job_id)
    return triggers


def fire_times(trigger: BaseTrigger, *, start: datetime, end: datetime, limit: int = 10_000) -> list[datetime]:
    """Every firing of `trigger` in [start, end], in order (pure: no scheduler, no clock)."""
    times: list[datetime] = []
    current = trigger.get_next_fire_time(None, start)
    while current is not None and current <= end and len(times) < limit:
        times.append(current)
        current = trigger.get_next_fire_time(current, current)
    return times


def latest_fire_time(trigger: BaseTrigger, *, now: datetime) -> datetime | None:
    """The last firing at or before `now`: the firing a (possibly late) run belongs to."""
    if isinstance(trigger, IntervalTrigger):  # jump close in UTC, then let the trigger itself decide
        start = trigger.start_date
        if now < start:
            return None
        approx = start + ((now - start) // trigger.interval) * trigger.interval
        times = fire_times(trigger, start=approx - 2 * trigger.interval - timedelta(hours=2), end=now)
        return times[-1] if times else None
    for lookback in (timedelta(hours=1), timedelta(days=1), timedelta(days=8), timedelta(days=400)):
        times = fire_times(trigger, start=now - lookback, end=now)
        if times:
            return times[-1]
    return None


def next_fire_time(trigger: BaseTrigger, *, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
