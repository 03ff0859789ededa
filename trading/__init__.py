"""Trading domain logic with no actors in it: the order ledger (positions,
netting, order statuses, the risk gate, pre-trade limits, circuit breaker,
rate limiter, kill switch), recovery over the ledger, audit records.

Kept apart from ``actors/`` so every rule can be unit-tested as plain
functions and objects; the coordinator is a thin actor that feeds the
ledger (``trading.ledger``) and carries out the effects it returns.
"""
