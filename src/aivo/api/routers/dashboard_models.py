"""Dashboard pages of the model registry: versions, one version, two side by side, and promote /
roll back behind a confirmation page (admin keys; audited with the reason)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from aivo.api import dashboard_charts as charts
from aivo.api.dashboard_ui import SECURITY_HEADERS, FormDep, render
from aivo.api.deps import AdminKey, ClockDep, RegistryDep, ServiceKey, SettingsDep
from aivo.errors import AivoError, NotFoundError
from aivo.services.dashboard_models import compare_versions, list_versions, policy_curves, promote_version, \
    rollback_version, version_detail

router = APIRouter(tags=["dashboard"], include_in_schema=False)
VersionPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="A version name.")]
VersionQuery = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def _actor(key) -> str:
    return f"apikey:{key.key_id}"


@router.get("/dashboard/models")
def models_page(request: Request, registry: RegistryDep, settings: SettingsDep, key: ServiceKey) -> Response:
    versions = list_versions(registry=registry)
    active = next((v for v in versions if v.status == "active"), None)
    policies = [(c, charts.policy_chart(c)) for c in policy_curves(settings)]
    return render(request, "models.html", key=key, title="Models", versions=versions, active=active,
                  chart=charts.versions_chart(versions), policies=policies,
                  default_policy=settings.recommendation_policy)


@router.get("/dashboard/models/compare")
def compare_page(request: Request, registry: RegistryDep, settings: SettingsDep, key: ServiceKey,
                 a: VersionQuery, b: VersionQuery) -> Response:
    comparison = compare_versions(registry=registry, settings=settings, a=a, b=b)
    return render(request, "compare.html", key=key, title=f"{a} vs {b}", c=comparison,
                  subgroup_chart=charts.subgroup_chart(comparison.subgroups, a, b))


@router.get("/dashboard/models/rollback")
def rollback_confirm(request: Request, registry: RegistryDep, key: AdminKey, to: VersionQuery | None = None,
                     ) -> Response:
    versions = list_versions(registry=registry)
    active = next((v for v in versions if v.status == "active"), None)
    choices = [v for v in versions if v.status != "active" and v.ever_active]
    return render(request, "rollback.html", key=key, title="Roll back", active=active, choices=choices, to=to,
                  error="")


@router.post("/dashboard/models/rollback")
def rollback(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, form: FormDep) -> Response:
    to = form.get("to") or None
    try:
        record = rollback_version(registry=registry, actor=_actor(key), reason=form.get("reason", ""), to_version=to,
                                  clock=clock)
    except AivoError as exc:
        versions = list_versions(registry=registry)
        return render(request, "rollback.html", key=key, title="Roll back", status_code=exc.http_status,
                      active=next((v for v in versions if v.status == "active"), None),
                      choices=[v for v in versions if v.status != "active" and v.ever_active], to=to,
                      error=exc.message, reason=form.get("reason", ""))
    return RedirectResponse(f"/dashboard/models/{record.version}?notice=rolled-back", status_code=303,
                            headers=SECURITY_HEADERS)


@router.get("/dashboard/models/{version}")
def version_page(request: Request, registry: RegistryDep, settings: SettingsDep, key: ServiceKey,
                 version: VersionPath) -> Response:
    detail = version_detail(registry=registry, settings=settings, version=version)
    others = [v.version for v in list_versions(registry=registry) if v.version != version]
    return render(request, "version.html", key=key, title=version, d=detail, others=others,
                  curve=charts.learning_curve(detail.history))


@router.get("/dashboard/models/{version}/report.png")
def version_report(settings: SettingsDep, key: ServiceKey, version: VersionPath) -> Response:
    """The training report image `aivo demo` drew for this version (AIVO_HOME/reports)."""
    detail_path = settings.home / "reports" / f"{version}.png"
    if not detail_path.is_file():
        raise NotFoundError(f"no training report image for {version}")
    return FileResponse(detail_path, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/dashboard/models/{version}/promote")
def promote_confirm(request: Request, registry: RegistryDep, settings: SettingsDep, key: AdminKey,
                    version: VersionPath) -> Response:
    detail = version_detail(registry=registry, settings=settings, version=version)
    active = next((v for v in list_versions(registry=registry) if v.status == "active"), None)
    return render(request, "promote.html", key=key, title=f"Promote {version}", d=detail, active=active, error="")


@router.post("/dashboard/models/{version}/promote")
def promote(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: AdminKey,
            version: VersionPath, form: FormDep) -> Response:
    try:
        promote_version(registry=registry, version=version, actor=_actor(key), reason=form.get("reason", ""),
                        clock=clock)
    except AivoError as exc:
        if isinstance(exc, NotFoundError):
            raise
        detail = version_detail(registry=registry, settings=settings, version=version)
        active = next((v for v in list_versions(registry=registry) if v.status == "active"), None)
        return render(request, "promote.html", key=key, title=f"Promote {version}", status_code=exc.http_status,
                      d=detail, active=active, error=exc.message, reason=form.get("reason", ""))
    return RedirectResponse(f"/dashboard/models/{version}?notice=promoted", status_code=303, headers=SECURITY_HEADERS)
