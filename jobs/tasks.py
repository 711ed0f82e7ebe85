"""The cron-like jobs' Celery tasks: call a URL, run a management command. Recorded in the run
ledger like every task (scheduler.worker.RecordedTask), with policies, health and alerts.

Each task also carries `kwargs_problems(kwargs)`: what is wrong with a schedule's kwargs for it,
which the schedule form asks before saving and beat before sending (scheduler.messages).
"""

from celery import shared_task

from jobs.commands import command_problems, command_run
from jobs.http_call import (
    NotYourTurn,
    SecretMissing,
    call_output,
    failure_of,
    http_call_of,
    http_call_send,
)
from scheduler.publish import BROKER_ERRORS
from scheduler.worker import JobFailed, run_id_of, run_note

# A call waits for its host's turn at most this often: past it the host is called too often by
# other jobs and sources for this schedule, and the run says so.
MAX_DEFERRALS = 20


@shared_task(name="jobs.http_call", bind=True, max_retries=None, throws=(JobFailed,))
def http_call(self, *, deferrals: int = 0, slot: int = 0, **call_kwargs) -> dict:
    call, problems = http_call_of(call_kwargs)
    if call is None:
        raise JobFailed("; ".join(problems))
    try:
        result, seconds = http_call_send(call, slot_ms=slot)
    except SecretMissing as missing:
        raise JobFailed(str(missing), output={"url": call.url, "outcome": "not_called"}) from None
    except NotYourTurn as wait:
        if deferrals >= MAX_DEFERRALS:
            raise JobFailed(f"rate_limited: the host's turn did not come in {deferrals} tries",
                            output={"url": call.url, "outcome": "rate_limited"}) from None
        run_id = run_id_of(self.request)
        if run_id is not None:
            run_note(run_id=run_id, output={"url": call.url, "outcome": "deferred", "detail": str(wait)})
        try:
            self.run_again_later(countdown=wait.seconds,
                                 kwargs={**call_kwargs, "deferrals": deferrals + 1, "slot": wait.slot_ms})
        except BROKER_ERRORS as error:
            raise JobFailed(f"{wait}; the next try could not be scheduled ({error})") from None
    output = call_output(call, result, seconds)
    failure = failure_of(call, result)
    if failure:
        raise JobFailed(failure, output=output)
    return output


http_call.kwargs_problems = lambda kwargs: http_call_of(kwargs)[1]


@shared_task(name="jobs.run_command", bind=True, throws=(JobFailed,))
def run_command(self, *, command: str = "", arguments: list | None = None) -> dict:
    problems = command_problems({"command": command, "arguments": arguments or []})
    if problems:
        raise JobFailed("; ".join(problems))
    output, succeeded = command_run(command, arguments or [])
    if not succeeded:
        raise JobFailed(f"manage.py {command} exited with status {output['exit_status']}"
                        + (f": {output['error']}" if output.get("error") else ""), output=output)
    return output


run_command.kwargs_problems = command_problems
