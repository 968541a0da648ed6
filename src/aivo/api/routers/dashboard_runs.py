"""Dashboard pages of what runs: trainer jobs and pipeline runs (live progress, curves, logs,
decision, cancel), federated rounds (with the gate's decision and the privacy figures), and
drift checks. Pages with something running reload themselves every few seconds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from aivo.api import dashboard_charts as charts
from aivo.api.dashboard_ui import SECURITY_HEADERS, FormDep, render
from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.api.schemas.common import MAX_INT32
from aivo.services.dashboard import RANGES, time_range
from aivo.services.dashboard_drift import list_drift_rows
from aivo.services.dashboard_models import list_versions
from aivo.services.dashboard_rounds import ledger_summary, list_rounds, round_detail
from aivo.services.dashboard_runs import (JOB_STATUSES, cancel_job_for, job_detail, list_job_rows, list_run_rows,
                                          run_detail)

router = APIRouter(tags=["dashboard"], include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=MAX_INT32)]
RangeQuery = Annotated[str, Query(pattern="^(" + "|".join(RANGES) + ")$")]
StatusQuery = Annotated[str, Query(pattern="^(|" + "|".join(JOB_STATUSES) + ")$")]
KindQuery = Annotated[str, Query(pattern="^(|main_brain|learner_model|federated|evaluation)$")]
PAGE = 50


@router.get("/dashboard/runs")
def runs_page(request: Request, registry: RegistryDep, clock: ClockDep, key: ServiceKey, status: StatusQuery = "",
              kind: KindQuery = "", page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    jobs = list_job_rows(registry=registry, key=key, status=status or None, kind=kind or None, limit=PAGE,
                         offset=(page - 1) * PAGE, clock=clock)
    runs = list_run_rows(registry=registry, limit=20)
    direct = [v for v in list_versions(registry=registry) if v.source.startswith("trained directly")]
    return render(request, "runs.html", key=key, title="Runs", refresh=jobs.open > 0, jobs=jobs, runs=runs,
                  direct=direct, status=status, kind=kind, page=page, pages=max(1, -(-jobs.total // PAGE)),
                  statuses=JOB_STATUSES)


@router.get("/dashboard/runs/jobs/{job_id}")
def job_page(request: Request, registry: RegistryDep, clock: ClockDep, key: ServiceKey, job_id: Id) -> Response:
    detail = job_detail(registry=registry, key=key, job_id=job_id, clock=clock)
    return render(request, "job.html", key=key, title=f"Job {job_id}", refresh=detail.row.is_open, d=detail,
                  curve=charts.learning_curve(detail.curve, live=detail.curve_is_live))


@router.get("/dashboard/runs/jobs/{job_id}/cancel")
def cancel_confirm(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, job_id: Id) -> Response:
    detail = job_detail(registry=registry, key=key, job_id=job_id, clock=clock)
    return render(request, "cancel.html", key=key, title=f"Cancel job {job_id}", d=detail)


@router.post("/dashboard/runs/jobs/{job_id}/cancel")
def cancel(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, job_id: Id,
           form: FormDep) -> Response:
    cancel_job_for(registry=registry, key=key, job_id=job_id, actor=f"apikey:{key.key_id}", clock=clock)
    return RedirectResponse(f"/dashboard/runs/jobs/{job_id}?notice=cancelled", status_code=303,
                            headers=SECURITY_HEADERS)


@router.get("/dashboard/runs/pipeline/{run_id}")
def pipeline_page(request: Request, registry: RegistryDep, key: ServiceKey, run_id: Id) -> Response:
    detail = run_detail(registry=registry, run_id=run_id)
    return render(request, "pipeline.html", key=key, title=f"Pipeline run {run_id}",
                  refresh=detail.row.status == "running", d=detail, curve=charts.learning_curve(detail.history))


@router.get("/dashboard/rounds")
def rounds_page(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: ServiceKey,
                range: RangeQuery = "all") -> Response:  # noqa: A002 (the query parameter's name)
    window = time_range(range, clock=clock)
    rounds = list_rounds(registry=registry, since=window.start)
    ledger = ledger_summary(registry=registry, settings=settings, tenant=key.tenant)
    return render(request, "rounds.html", key=key, title="Federated rounds", rounds=rounds, ledger=ledger,
                  window=window, budget=settings.epsilon_budget, any_sites=any(r.sites for r in rounds),
                  auc_chart=charts.rounds_auc_chart(rounds, window),
                  epsilon_chart=charts.epsilon_chart(rounds, settings.epsilon_budget, window),
                  ledger_chart=charts.ledger_chart(ledger))


@router.get("/dashboard/rounds/{update_id}")
def round_page(request: Request, registry: RegistryDep, key: ServiceKey, update_id: Id) -> Response:
    detail = round_detail(registry=registry, update_id=update_id)
    return render(request, "round.html", key=key, title=f"Round {update_id}", d=detail)


@router.get("/dashboard/drift")
def drift_page(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: ServiceKey,
               range: RangeQuery = "all") -> Response:  # noqa: A002 (the query parameter's name)
    window = time_range(range, clock=clock)
    rows = list_drift_rows(registry=registry, since=window.start)
    return render(request, "drift.html", key=key, title="Drift", rows=rows, window=window,
                  threshold=settings.drift_threshold,
                  chart=charts.drift_chart(rows, window, settings.drift_threshold),
                  signals_chart=charts.drift_signals_chart(rows, window))
