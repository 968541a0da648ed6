"""Federated aggregation: strategies, user-level DP, the streaming round loop and the
aggregation service (eligibility, ledger, gate, registry records)."""
