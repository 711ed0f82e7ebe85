"""What a fault scenario did, per (schedule, slot): the probe's notes of each execution against
the ledger's rows, counted as the issue's table counts them, and the assertion every scenario
makes: each slot executed at most once, and executed or recorded with its reason, never left
claimed, sent or running.
"""

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

UNSETTLED = ("claimed", "sent", "running")
RECORDED = ("missed", "not_enqueued", "failed", "skipped")

# Every scenario's row, printed at the end of the session (tests/faults/conftest.py).
ROWS: list["Tally"] = []


def probe_notes(log: Path) -> dict[tuple[str, datetime], dict]:
    """(schedule, slot) -> how often the probe started and finished it, and in which processes."""
    notes = defaultdict(lambda: {"start": 0, "done": 0, "pids": []})
    for line in (log.read_text().splitlines() if log.exists() else []):
        event, name, slot, pid, _task_id = line.split("\t")
        note = notes[(name, datetime.fromisoformat(slot))]
        note[event] += 1
        if event == "start":
            note["pids"].append(int(pid))
    return notes


def report_notes(rows: list[dict], *, schedule: str, received: dict[str, int]) -> dict[tuple[str, datetime], dict]:
    """The notes of a report's one-off schedule, as the probe's: its slot executed as often as
    a recipient got the email (`received`: recipient -> emails), the report's own output."""
    done = max(received.values(), default=0)
    return {(schedule, datetime.fromisoformat(row["scheduled_for"])): {"start": done, "done": done, "pids": []}
            for row in rows if row["schedule_name"] == schedule}


@dataclass
class Tally:
    scenario: str
    expected: int = 0
    once: int = 0
    twice: int = 0
    recorded: int = 0
    stuck: int = 0
    # Neither executed nor in the ledger with a reason: a slot skipped without a word.
    lost: int = 0
    # Executed once, yet the ledger says otherwise (failed, or succeeded without executing).
    misrecorded: int = 0
    reasons: dict = field(default_factory=lambda: defaultdict(int))
    # One example of each kind of reason recorded (its first 160 characters), and how often.
    examples: dict = field(default_factory=lambda: defaultdict(int))
    problems: list = field(default_factory=list)
    settle_seconds: float = 0.0

    HEADER = (f"{'scenario':<44} {'expected':>8} {'once':>5} {'twice':>5} {'recorded':>8} {'stuck':>5} "
              f"{'lost':>4} {'wrong':>5}  recorded as")

    def row(self) -> str:
        recorded = ", ".join(f"{status} {n}" for status, n in sorted(self.reasons.items())) or "-"
        return (f"{self.scenario:<44} {self.expected:>8} {self.once:>5} {self.twice:>5} {self.recorded:>8} "
                f"{self.stuck:>5} {self.lost:>4} {self.misrecorded:>5}  {recorded}")

    def holds(self) -> bool:
        return self.expected > 0 and not (self.twice or self.stuck or self.lost or self.misrecorded)

    def report(self) -> str:
        shown = self.problems[:40]
        more = f"\n  ... and {len(self.problems) - len(shown)} more" if len(self.problems) > len(shown) else ""
        examples = [f"  {n} x {example}" for example, n in sorted(self.examples.items())]
        return "\n".join([self.HEADER, self.row(), *examples, *(f"  {problem}" for problem in shown)]) + more


def tally(scenario: str, names: list[str], rows: list[dict], notes: dict, *, every: float) -> Tally:
    """Count each (schedule, slot) of the schedules `names` in the ledger `rows` and the
    execution `notes` (probe_notes, report_notes) once.

    The slots expected are every slot of each schedule from its first to its last one seen in
    either, `every` seconds apart: a slot missing from both in between was skipped silently.
    """
    result = Tally(scenario)
    notes = {key: note for key, note in notes.items() if key[0] in names}
    ledger = {}
    for row in rows:
        ledger[(row["schedule_name"], datetime.fromisoformat(row["scheduled_for"]))] = row
    by_schedule = defaultdict(set)
    for name, slot in [*ledger, *notes]:
        by_schedule[name].add(slot)
    step = timedelta(seconds=every)
    for name, slots in sorted(by_schedule.items()):
        ordered = sorted(slots)
        for before, after in zip(ordered, ordered[1:], strict=False):
            gap = round((after - before) / step) - 1
            if gap > 0:
                result.expected += gap
                result.lost += gap
                result.problems.append(f"{name}: {gap} slot(s) between {before:%H:%M:%S.%f} and "
                                       f"{after:%H:%M:%S.%f} neither executed nor in the ledger")
        for slot in ordered:
            result.expected += 1
            row, note = ledger.get((name, slot)), notes.get((name, slot), {"start": 0, "done": 0, "pids": []})
            where = f"{name} @ {slot:%H:%M:%S.%f}"
            status = row["status"] if row else None
            seen = f"ledger {status or 'no row'}, probe started {note['start']}x finished {note['done']}x"
            if row and (row["reason"] or row["error"]):
                seen += f": {(row['reason'] or row['error']).strip().splitlines()[-1][:300]}"
            if note["done"] >= 2:
                result.twice += 1
                result.problems.append(f"{where} executed {note['done']} times (pids {note['pids']}); {seen}")
            elif status in UNSETTLED:
                result.stuck += 1
                result.problems.append(f"{where} left {status}; {seen}")
            elif note["done"] == 1:
                result.once += 1
                if status != "succeeded":
                    result.misrecorded += 1
                    result.problems.append(f"{where} executed once but {seen}")
            elif status in RECORDED and (row["reason"] or row["error"]):
                result.recorded += 1
                result.reasons[status] += 1
                result.examples[f"{status}: {_gist(row['reason'] or row['error'])}"] += 1
            else:
                result.lost += 1
                result.problems.append(f"{where} not executed and not recorded with a reason; {seen}")
    return result


def _gist(text: str) -> str:
    """A reason without what varies from run to run (times, seconds late), to group alike ones."""
    return re.sub(r"\d[\d:.T+-]*", "N", text.strip().splitlines()[-1])[:160]
