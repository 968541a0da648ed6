"""Trigger computation with APScheduler's own triggers and fixed instants (no sleeping, no scheduler)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aivo.config import Settings
from aivo.errors import ConfigError, DataError
from aivo.scheduler.triggers import (
    build_triggers,
    cron_trigger,
    fire_times,
    latest_fire_time,
    next_fire_time,
    trigger_from_override,
)

UTC = timezone.utc
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning


def _settings(**values) -> Settings:
    return Settings(**values)


def test_daily_training_fires_every_day_at_the_configured_hour_in_the_timezone():
    triggers = build_triggers(_settings(timezone="America/Chicago"))
    week = fire_times(triggers["aivo_main_brain_daily"], start=MONDAY, end=MONDAY + timedelta(days=7))
    assert len(week) == 7
    local = [t.astimezone(ZoneInfo("America/Chicago")) for t in week]
    assert all((t.hour, t.minute) == (2, 0) for t in local)
    assert [t.day for t in local] == [3, 4, 5, 6, 7, 8, 9]
    # Daylight saving starts on Sunday 8 March in Chicago: 02:00 local is 08:00 UTC before, 07:00 after.
    assert week[0].astimezone(UTC).hour == 8 and week[-1].astimezone(UTC).hour == 7


def test_weekly_retraining_fires_on_the_configured_day_and_hour():
    triggers = build_triggers(_settings(weekly_retraining_day="sunday", weekly_retraining_hour=3))
    times = fire_times(triggers["weekly_full_retraining"], start=MONDAY, end=MONDAY + timedelta(days=21))
    assert [t.isoformat() for t in times] == ["2026-03-08T03:00:00+00:00", "2026-03-15T03:00:00+00:00",
                                              "2026-03-22T03:00:00+00:00"]
    wednesday = build_triggers(_settings(weekly_retraining_day="Wed", weekly_retraining_hour=23))
    (first,) = fire_times(wednesday["weekly_full_retraining"], start=MONDAY, end=MONDAY + timedelta(days=7))
    assert (first.weekday(), first.hour) == (2, 23)


def test_interval_jobs_fire_on_a_grid_shared_by_every_process():
    triggers = build_triggers(_settings(drift_check_interval_hours=6, adaptive_check_interval_hours=2))
    drift = fire_times(triggers["drift_monitor"], start=MONDAY, end=MONDAY + timedelta(days=1))
    assert [t.hour for t in drift] == [12, 18, 0, 6]  # 00/06/12/18 whatever the start time
    assert all(t.minute == 0 and t.second == 0 for t in drift)
    adaptive = fire_times(triggers["adaptive_training_check"], start=MONDAY, end=MONDAY + timedelta(hours=6))
    assert [t.hour for t in adaptive] == [10, 12, 14]
    # Two processes building the triggers at different moments agree on the firing a late run belongs to.
    late = MONDAY + timedelta(hours=3, minutes=1, seconds=7)
    again = build_triggers(_settings(drift_check_interval_hours=6))
    assert latest_fire_time(triggers["drift_monitor"], now=late) == \
        latest_fire_time(again["drift_monitor"], now=late) == datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert next_fire_time(triggers["drift_monitor"], now=datetime(2026, 3, 2, 12, tzinfo=UTC)) == \
        datetime(2026, 3, 2, 18, tzinfo=UTC)


def test_latest_fire_time_of_a_cron_job():
    daily = build_triggers(_settings())["aivo_main_brain_daily"]
    assert latest_fire_time(daily, now=datetime(2026, 3, 2, 2, 0, 0, tzinfo=UTC)) == datetime(2026, 3, 2, 2, tzinfo=UTC)
    assert latest_fire_time(daily, now=datetime(2026, 3, 2, 1, 59, tzinfo=UTC)) == datetime(2026, 3, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("expression, days", [
    ("0 4 * * sun", {6}), ("0 4 * * 0", {6}), ("0 4 * * 7", {6}), ("0 4 * * 1-5", {0, 1, 2, 3, 4}),
    ("0 4 * * 0-2", {6, 0, 1}), ("0 4 * * fri-sun", {4, 5, 6}), ("0 4 * * */3", {6, 2, 5}),
])
def test_cron_day_of_week_counts_from_sunday_like_crontab(expression, days):
    trigger = cron_trigger(expression, timezone=ZoneInfo("UTC"))
    times = fire_times(trigger, start=MONDAY, end=MONDAY + timedelta(days=7))
    assert {t.weekday() for t in times} == days  # python weekday(): Monday = 0


@pytest.mark.parametrize("expression, message", [
    ("0 25 * * *", "higher than the maximum"),
    ("0 2 * *", "expected 5 fields"),
    ("0 2 * * funday", "unknown day of week"),
    ("every day", "expected 5 fields"),
])
def test_an_invalid_cron_expression_is_refused_with_a_clear_message(expression, message):
    expected = re.escape(f"MAIN_BRAIN_TRAINING_SCHEDULE '{expression}' is not a valid cron expression") + ".*" + message
    with pytest.raises(ConfigError, match=expected):
        build_triggers(_settings(main_brain_training_schedule=expression))
    with pytest.raises(DataError, match="not a valid cron expression"):
        trigger_from_override({"cron": expression}, timezone=ZoneInfo("UTC"), job_id="drift_monitor")


def test_bad_timezone_and_overrides():
    with pytest.raises(ConfigError, match="not a known IANA time zone"):
        build_triggers(_settings(timezone="Mars/Olympus"))
    with pytest.raises(DataError, match="either"):
        trigger_from_override({"cron": "0 1 * * *", "interval_hours": 2}, timezone=ZoneInfo("UTC"), job_id="x")
    with pytest.raises(DataError, match="positive"):
        trigger_from_override({"interval_hours": 0}, timezone=ZoneInfo("UTC"), job_id="x")
    overridden = build_triggers(_settings(), {"drift_monitor": {"interval_hours": 1}})
    assert len(fire_times(overridden["drift_monitor"], start=MONDAY, end=MONDAY + timedelta(hours=3))) == 4
