"""Privacy accounting (Opacus / dp-accounting accountants behind one interface), the
per-learner user-level ledger and record-level epsilon (the report is `aivo.services.privacy`).

The ledger's table is defined with every other table in `aivo.registry.tables`.
"""
