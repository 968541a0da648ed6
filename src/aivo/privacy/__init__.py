"""Privacy accounting (Opacus / dp-accounting accountants behind one interface), the
per-learner user-level ledger and the privacy report.

Kept import-light: the registry imports `aivo.privacy.ledger_table` so that Alembic and the
schema tests see the ledger table; the accountants import Opacus only when used.
"""
