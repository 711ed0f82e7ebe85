"""Where a running process spends its time: py-spy samples it from outside, and the collapsed
stacks are summed per function, by own time (the frame on top) and by total time (anywhere on
the stack), so that a profile says which step of beat to cut (building messages, the claim's
SQL, publishing) without a tracer inside beat changing what is measured."""

import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

# py-spy's raw frames read "function (path/to/module.py:line)"; lines are dropped so that one
# function's samples add up.
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
TOP = 30


def py_spy() -> str:
    path = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not path:
        raise SystemExit("--profile needs py-spy: `pip install py-spy==0.4.3`, or set PY_SPY to its path")
    return path


class Sampler:
    """py-spy recording one process (and its children) until stop(), then the summary beside it."""

    def __init__(self, pid: int, stem: Path, rate: int = 200) -> None:
        self.stem = stem
        self.raw = stem.with_suffix(".collapsed.txt")
        self.process = subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(rate),
             "--format", "raw", "--output", str(self.raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        # py-spy writes its file when interrupted, as on Ctrl-C.
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return
        if self.raw.exists():
            self.stem.with_suffix(".top.txt").write_text(summary(self.raw.read_text()))


def _function(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    # Site-packages and the standard library by package, our own code by its path in the project.
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def summary(collapsed: str) -> str:
    own, total, samples = Counter(), Counter(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_function(frame) for frame in stack.split(";")]
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for function in set(frames):
            total[function] += n
    if not samples:
        return "no samples\n"
    lines = [f"{samples} samples"]
    for title, counter in (("own time", own), ("total time", total)):
        lines.append(f"\n-- by {title}")
        lines.extend(f"{100 * n / samples:6.1f}%  {function}" for function, n in counter.most_common(TOP))
    return "\n".join(lines) + "\n"
