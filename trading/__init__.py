"""Trading domain logic with no actors in it: positions, netting, pre-trade
limits, circuit breaker, rate limiter, audit records.

Kept apart from ``actors/`` so every rule can be unit-tested as plain
functions and the coordinator stays a thin owner of this state.
"""
