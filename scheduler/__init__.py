"""The scheduling core: beat's steps (sync, claim, publish, recover), the missed-run policy,
timing, the run ledger and its worker side, and the admin of schedules and runs.

`scheduler.settings` and `celery -A scheduler` are kept for the tools that name them; both
hand over to the composition root in `wiring`.
"""
