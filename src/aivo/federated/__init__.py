"""Federated aggregation: strategies (a checked registry), user-level DP, streaming aggregation,
the gate, and a round's steps over one plan (`round.py`); `aivo.services.aggregation` runs them."""
