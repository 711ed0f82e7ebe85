"""The child process a report benchmark measures in: Django set up afresh on a SQLite file of the
run (the report's definition), the sections reading their named data sources, and its peak RSS
from wait4, so the figure is the build's own."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def child_env(workdir: Path, **variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", *variables)}
    env.update(DATA_DIR=str(workdir), SECRET_KEY="bench-only-key-" + "x" * 40, LOG_LEVEL="ERROR",
               DJANGO_SETTINGS_MODULE="scheduler.settings", **variables)
    return env


def measure_in_child(script: str, workdir: Path, env: dict, *arguments: str) -> dict:
    """Runs `script --child FIGURES *arguments` after migrating; the figures it wrote, with its peak RSS."""
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    figures_path = workdir / "figures.json"
    process = subprocess.Popen([PYTHON, script, "--child", str(figures_path), *arguments], cwd=PROJECT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the measuring process failed (exit {os.waitstatus_to_exitcode(status)})")
    figures = json.loads(figures_path.read_text())
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    return figures


def bench_arguments(description: str) -> argparse.ArgumentParser:
    """The options every report bench has: the PostgreSQL server, and --child for the measuring process."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    return parser
