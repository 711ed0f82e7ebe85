"""The two tasks bench_worker.py measures (its workers load them with `--include worker_tasks`):
the same trivial body, once on Celery's own Task (a results-only task, the baseline) and once on
the app's RecordedTask, which records a run whenever the message carries one."""

from celery import Task, shared_task


@shared_task(base=Task, name="bench.results_only")
def results_only() -> int:
    return 1


@shared_task(name="bench.recorded")
def recorded() -> int:
    return 1
