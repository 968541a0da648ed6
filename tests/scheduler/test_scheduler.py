"""The scheduler with an injected clock: leadership, once-per-firing runs, guards, catch-up,
recorded runs, status and run-time overrides (no APScheduler thread: `tick` and `fire` are
called directly, as the lease thread and APScheduler would)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aivo.errors import DataError, NotFoundError
from aivo.scheduler.records import list_scheduler_runs
from aivo.scheduler.runner import TrainingScheduler
from aivo.services.scheduler import make_scheduler, scheduler_status, trigger_training, update_schedule
from aivo.training.jobs import list_jobs

UTC = timezone.utc


def _scheduler(registry, settings, clock, name, calls=None):
    def action(job_id):
        def run(forced):
            if calls is not None:
                calls.append((name, job_id, forced))
            return {"status": "succeeded", "by": name}
        return run

    actions = {job_id: action(job_id) for job_id in ("aivo_main_brain_daily", "drift_monitor",
                                                     "weekly_full_retraining", "adaptive_training_check",
                                                     "federated_aggregation_weekly")}
    return TrainingScheduler(registry=registry, settings=settings, clock=clock, instance_id=name, actions=actions)


def _runs(registry, job_name=None):
    return registry.run(lambda s: list_scheduler_runs(session=s, job_name=job_name), read_only=True)


def test_one_leader_and_each_firing_runs_once(registry, settings, clock):
    clock.set(datetime(2026, 3, 3, 1, 0, tzinfo=UTC))
    calls: list = []
    a = _scheduler(registry, settings, clock, "A", calls)
    b = _scheduler(registry, settings, clock, "B", calls)
    assert a.tick() and not b.tick()  # A leads, B stands by
    clock.set(datetime(2026, 3, 3, 2, 0, 0, 40_000, tzinfo=UTC))  # APScheduler fires a few ms late
    assert b.fire("aivo_main_brain_daily") is None  # not the leader: does nothing
    run = a.fire("aivo_main_brain_daily")
    assert (run.job_name, run.status, run.instance_id) == ("aivo_main_brain_daily", "succeeded", "A")
    assert run.scheduled_for == datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    # A stalled B that still believes it leads fires the same job: the firing is taken, nothing runs.
    b._leader = True
    clock.advance(seconds=20)
    assert b.fire("aivo_main_brain_daily") is None
    assert a.fire("aivo_main_brain_daily") is None  # and A's own duplicate callback neither
    assert [c for c in calls if c[1] == "aivo_main_brain_daily"] == [("A", "aivo_main_brain_daily", False)]
    assert len(_runs(registry, "aivo_main_brain_daily")) == 1


def test_the_standby_takes_over_when_the_leader_stops_renewing(registry, settings, clock):
    a = _scheduler(registry, settings, clock, "A")
    b = _scheduler(registry, settings, clock, "B")
    assert a.tick() and not b.tick()
    clock.advance(seconds=settings.job_lease_s - 1)
    assert a.tick() and not b.tick()  # renewed in time
    clock.advance(seconds=settings.job_lease_s + 1)  # A stalls for longer than the lease
    assert b.tick() and b.is_leader
    assert not a.tick() and not a.is_leader  # A comes back and stands by


def test_missed_firings_are_caught_up_once_and_only_when_recent(registry, settings, clock):
    clock.set(datetime(2026, 3, 3, 2, 30, tzinfo=UTC))  # the process was down at 02:00
    calls: list = []
    a = _scheduler(registry, settings, clock, "A", calls)
    a.tick()  # becoming leader catches up
    assert ("A", "aivo_main_brain_daily", False) in calls
    assert ("A", "drift_monitor", False) not in calls  # its 00:00 firing is 2.5 h old: skipped, not run late
    count = len(calls)
    b = _scheduler(registry, settings, clock, "B", calls)
    clock.advance(seconds=settings.job_lease_s + 1)
    b.tick()  # the new leader finds the 02:00 firing already done
    assert len(calls) == count


def test_guards_and_outcomes_are_recorded(loaded, settings, clock):
    clock.set(datetime(2026, 3, 3, 1, 59, tzinfo=UTC))
    scheduler = make_scheduler(registry=loaded, settings=settings, clock=clock, instance_id="S")
    scheduler.tick()
    drift = scheduler.run_now("drift_monitor")
    assert drift.status == "skipped" and "no active Main Brain" in drift.error
    clock.set(datetime(2026, 3, 3, 2, 0, 1, tzinfo=UTC))
    daily = scheduler.fire("aivo_main_brain_daily")
    assert daily.status == "succeeded" and daily.outcome["decision"] == "queued"
    job_id = daily.outcome["job_id"]
    clock.set(datetime(2026, 3, 8, 3, 0, 2, tzinfo=UTC))  # Sunday 03:00: the weekly run, while the daily job waits
    weekly = scheduler.fire("weekly_full_retraining")
    assert weekly.status == "skipped" and weekly.outcome["decisions"][0]["status"] == "already_training"
    assert weekly.outcome["decisions"][0]["job_id"] == job_id
    clock.set(datetime(2026, 3, 8, 4, 0, 0, tzinfo=UTC))
    federated = scheduler.fire("federated_aggregation_weekly")
    assert federated.status == "succeeded" and federated.outcome["decision"] == "queued"
    jobs = loaded.run(lambda s: list_jobs(session=s), read_only=True).jobs
    assert sorted(j.model_id for j in jobs) == ["aivo-federated-aggregation", "aivo-main-brain"]
    assert {r.job_name: r.status for r in _runs(loaded)} == {
        "drift_monitor": "skipped", "aivo_main_brain_daily": "succeeded", "weekly_full_retraining": "skipped",
        "federated_aggregation_weekly": "succeeded"}


def test_status_document_and_manual_trigger(loaded, settings, clock):
    clock.set(datetime(2026, 3, 2, 14, 30, tzinfo=UTC))
    make_scheduler(registry=loaded, settings=settings, clock=clock, instance_id="S").tick()
    decision = trigger_training(registry=loaded, settings=settings, reason="manual_test", actor="tests", clock=clock)
    assert decision.status == "queued" and decision.job.priority == "high"
    again = trigger_training(registry=loaded, settings=settings, actor="tests", clock=clock)
    assert again.status == "already_training" and again.job.id == decision.job.id
    status = scheduler_status(registry=loaded, settings=settings, clock=clock)
    s = status["scheduler"]
    assert s["running"] and s["leader"] == "S" and status["timestamp"] == "2026-03-02T14:30:00+00:00"
    jobs = {j["id"]: j for j in s["jobs"]}
    assert jobs["aivo_main_brain_daily"]["next_run"] == "2026-03-03T02:00:00+00:00"
    assert jobs["drift_monitor"]["next_run"] == "2026-03-02T18:00:00+00:00"
    assert jobs["drift_monitor"]["trigger"] == "interval[6:00:00]"
    assert jobs["weekly_full_retraining"]["next_run"] == "2026-03-08T03:00:00+00:00"
    assert jobs["adaptive_training_check"]["next_run"] == "2026-03-02T16:00:00+00:00"
    assert s["models_training"] == [{"model_id": "aivo-main-brain", "job_id": decision.job.id, "status": "queued",
                                     "kind": "main_brain"}]
    manual = _runs(loaded, "manual:aivo-main-brain")
    assert [r.status for r in manual] == ["skipped", "succeeded"]
    clock.advance(seconds=settings.job_lease_s + 1)
    assert not scheduler_status(registry=loaded, settings=settings, clock=clock)["scheduler"]["running"]


def test_run_time_schedule_changes(registry, settings, clock):
    clock.set(datetime(2026, 3, 2, 14, 30, tzinfo=UTC))
    with pytest.raises(DataError, match="not a valid cron expression"):
        update_schedule(registry=registry, settings=settings, job_id="aivo_main_brain_daily", cron="0 2 * *",
                        actor="tests", clock=clock)
    with pytest.raises(NotFoundError, match="unknown scheduler job"):
        update_schedule(registry=registry, settings=settings, job_id="nightly", cron="0 2 * * *", actor="t")
    status = scheduler_status(registry=registry, settings=settings, clock=clock)
    assert all(j["configured_by"] != "override" for j in status["scheduler"]["jobs"])  # nothing written
    update_schedule(registry=registry, settings=settings, job_id="aivo_main_brain_daily", cron="30 1 * * 1-5",
                    actor="tests", clock=clock)
    update_schedule(registry=registry, settings=settings, job_id="drift_monitor", enabled=False, actor="t", clock=clock)
    jobs = {j["id"]: j for j in scheduler_status(registry=registry, settings=settings, clock=clock)["scheduler"]["jobs"]}
    assert jobs["aivo_main_brain_daily"]["next_run"] == "2026-03-03T01:30:00+00:00"
    assert jobs["aivo_main_brain_daily"]["configured_by"] == "override"
    assert jobs["drift_monitor"]["next_run"] is None and not jobs["drift_monitor"]["enabled"]
    calls: list = []
    scheduler = _scheduler(registry, settings, clock, "S", calls)
    scheduler.tick()  # picks the overrides up
    clock.set(datetime(2026, 3, 2, 18, 0, tzinfo=UTC))
    assert scheduler.fire("drift_monitor") is None  # disabled
    clock.set(datetime(2026, 3, 3, 1, 30, 1, tzinfo=UTC))
    assert scheduler.fire("aivo_main_brain_daily").scheduled_for == datetime(2026, 3, 3, 1, 30, tzinfo=UTC)
    update_schedule(registry=registry, settings=settings, job_id="drift_monitor", reset=True, actor="t", clock=clock)
    scheduler.tick()
    clock.set(datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    assert scheduler.fire("drift_monitor").scheduled_for == datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
