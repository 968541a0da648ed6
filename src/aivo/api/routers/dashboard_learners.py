"""Dashboard pages of learners: search by the id the school uses (sent in a POST body, so it
never lands in a URL or an access log; pseudonymized here), the class or school list, a
learner's page, and export and erasure behind confirmation pages (admin keys; audited).

Who may see a learner is the one access rule (aivo.services.api_keys.learner_for_key): a teacher
key its class list, admin and service keys their tenant; another tenant's learner is "not found"."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from aivo.api import dashboard_charts as charts
from aivo.services.api_keys import LearnerRef, learner_for_key
from aivo.api.dashboard_ui import LEARNER_ROLES, SECURITY_HEADERS, FormDep, render
from aivo.api.deps import AdminKey, ClockDep, RegistryDep, SettingsDep, require_roles, VerifiedKey
from aivo.api.state import forget_learner
from aivo.errors import AivoError, DataError, ForbiddenError, NotFoundError
from aivo.services.dashboard_learners import (erase_learner, export_learner_data, find_pseudonym, learner_page,
                                              list_learner_rows)

router = APIRouter(tags=["dashboard"], include_in_schema=False)
ReaderKey = Annotated[VerifiedKey, Depends(require_roles(*LEARNER_ROLES))]
PseudonymPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16,64}$", description="The learner's pseudonym.")]
PAGE = 50
ERASE_WORD = "ERASE"


def _learner(registry, key: VerifiedKey, pseudonym: str) -> LearnerRef:
    """The learner if this key may see it, else the API's one rule's refusal in plain words."""
    try:
        return learner_for_key(registry=registry, key=key, pseudonym=pseudonym)
    except NotFoundError:
        raise NotFoundError("No learner with this id in your school.") from None
    except ForbiddenError:
        if key.role == "teacher":
            raise ForbiddenError("This learner is not on your class list. Ask your school's AIVO administrator to "
                                 "add them if they are in your class.") from None
        raise ForbiddenError("Your access key cannot open learners' records.") from None


def _list(request: Request, registry, key: VerifiedKey, page: int, *, error: str = "", status_code: int = 200,
          searched: str = "") -> Response:
    rows, total = list_learner_rows(registry=registry, key=key, limit=PAGE, offset=(page - 1) * PAGE)
    return render(request, "learners.html", key=key, status_code=status_code, title="Learners", rows=rows,
                  total=total, page=page, pages=max(1, -(-total // PAGE)), error=error, searched=searched)


@router.get("/dashboard/learners")
def learners_page(request: Request, registry: RegistryDep, key: ReaderKey,
                  page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    return _list(request, registry, key, page)


@router.post("/dashboard/learners/search")
def search(request: Request, registry: RegistryDep, settings: SettingsDep, key: ReaderKey, form: FormDep) -> Response:
    raw = form.get("learner_id", "")
    try:
        if len(raw) > 256:
            raise DataError("a learner id is at most 256 characters")
        ref = _learner(registry, key, find_pseudonym(settings=settings, raw_id=raw))
    except AivoError as exc:  # unknown, another tenant's, or not on this teacher's class list
        return _list(request, registry, key, 1, error=exc.message, status_code=exc.http_status, searched=raw)
    return RedirectResponse(f"/dashboard/learners/{ref.pseudonym}", status_code=303, headers=SECURITY_HEADERS)


@router.get("/dashboard/learners/{pseudonym}")
def learner(request: Request, registry: RegistryDep, settings: SettingsDep, clock: ClockDep, key: ReaderKey,
            pseudonym: PseudonymPath) -> Response:
    ref = _learner(registry, key, pseudonym)
    page = learner_page(registry=registry, settings=settings, pseudonym=ref.pseudonym, clock=clock)
    return render(request, "learner.html", key=key, title="Learner", p=page, budget=settings.epsilon_budget,
                  mastery_chart=charts.mastery_chart(page.mastery_over_time, level_up=settings.mastery_level_up,
                                                     level_down=settings.mastery_level_down))


@router.get("/dashboard/learners/{pseudonym}/export")
def export_confirm(request: Request, registry: RegistryDep, key: AdminKey, pseudonym: PseudonymPath) -> Response:
    ref = _learner(registry, key, pseudonym)
    return render(request, "learner_export.html", key=key, title="Export a learner's data", pseudonym=ref.pseudonym)


@router.post("/dashboard/learners/{pseudonym}/export")
def export(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, pseudonym: PseudonymPath,
           form: FormDep) -> Response:
    ref = _learner(registry, key, pseudonym)
    document = export_learner_data(registry=registry, key=key, pseudonym=ref.pseudonym,
                                   actor=f"apikey:{key.key_id}", clock=clock)
    headers = {**SECURITY_HEADERS,
               "Content-Disposition": f'attachment; filename="aivo-learner-{ref.pseudonym[:16]}.json"'}
    return Response(json.dumps(document, indent=2, sort_keys=True), media_type="application/json", headers=headers)


@router.get("/dashboard/learners/{pseudonym}/erase")
def erase_confirm(request: Request, registry: RegistryDep, key: AdminKey, pseudonym: PseudonymPath) -> Response:
    ref = _learner(registry, key, pseudonym)
    return render(request, "learner_erase.html", key=key, title="Erase a learner", pseudonym=ref.pseudonym,
                  word=ERASE_WORD, error="")


@router.post("/dashboard/learners/{pseudonym}/erase")
def erase(request: Request, registry: RegistryDep, clock: ClockDep, key: AdminKey, pseudonym: PseudonymPath,
          form: FormDep) -> Response:
    ref = _learner(registry, key, pseudonym)
    reason = form.get("reason", "").strip()
    error = ""
    if form.get("confirm", "").strip() != ERASE_WORD:
        error = f"Type {ERASE_WORD} in capitals to confirm: erasure cannot be undone."
    elif not reason or len(reason) > 1000:
        error = "Say why (1 to 1000 characters): the reason is kept in the audit log."
    if error:
        return render(request, "learner_erase.html", key=key, title="Erase a learner", status_code=422,
                      pseudonym=ref.pseudonym, word=ERASE_WORD, error=error, reason=reason)
    erase_learner(registry=registry, pseudonym=ref.pseudonym, actor=f"apikey:{key.key_id}", reason=reason,
                  clock=clock)
    forget_learner(request.app.state, learner_pk=ref.pk, pseudonym=ref.pseudonym)
    return RedirectResponse("/dashboard/learners?notice=erased", status_code=303, headers=SECURITY_HEADERS)
