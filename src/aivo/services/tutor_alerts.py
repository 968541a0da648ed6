"""Safety alerts for a school's staff: list and acknowledge (the API and the dashboard call these).

Admin and counsellor keys see every alert of their tenant; a teacher key sees the alerts of
the learners on its class list; service keys (programs) see none. Every read and
acknowledgement is audited (aivo.tutor.alerts)."""

from __future__ import annotations

from aivo.clock import SYSTEM_CLOCK, Clock
from aivo.errors import ForbiddenError
from aivo.registry import Registry
from aivo.registry.api_keys import VerifiedKey
from aivo.tutor.alerts import AlertRecord, acknowledge_alert, get_alert, list_alerts

ALERT_READER_ROLES = ("admin", "counsellor", "teacher")


def _check_reader(key: VerifiedKey) -> None:
    if key.role not in ALERT_READER_ROLES:
        raise ForbiddenError(f"safety alerts are for admin, counsellor and teacher keys; this is a {key.role} key")


def _actor(key: VerifiedKey) -> str:
    return f"api-key:{key.key_id}"


def alerts_for_key(*, registry: Registry, key: VerifiedKey, include_acknowledged: bool = False, limit: int = 100,
                   offset: int = 0, clock: Clock = SYSTEM_CLOCK) -> list[AlertRecord]:
    _check_reader(key)
    return registry.run(lambda session: list_alerts(
        session=session, tenant=key.tenant, teacher_key_pk=key.pk if key.role == "teacher" else None,
        include_acknowledged=include_acknowledged, limit=limit, offset=offset, actor=_actor(key), clock=clock))


def acknowledge_for_key(*, registry: Registry, key: VerifiedKey, alert_id: int,
                        clock: Clock = SYSTEM_CLOCK) -> AlertRecord:
    """A teacher may acknowledge only its class list's alerts (others are answered 404)."""
    _check_reader(key)

    def work(session) -> AlertRecord:
        if key.role == "teacher":
            visible = list_alerts(session=session, tenant=key.tenant, teacher_key_pk=key.pk,
                                  include_acknowledged=True, limit=100_000, actor=_actor(key), clock=clock)
            if alert_id not in {a.id for a in visible}:
                get_alert(session=session, alert_id=-1, tenant=key.tenant)  # raises the 404
        return acknowledge_alert(session=session, alert_id=alert_id, tenant=key.tenant, actor=_actor(key),
                                 clock=clock)

    return registry.run(work)
