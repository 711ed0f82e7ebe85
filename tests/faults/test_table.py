"""The table of scenarios at the end of the session, as `make test` runs the suite: in
pytest-xdist's worker processes, which count the rows away from the process that prints it."""

import subprocess
import sys

from tests.conftest import PROJECT_DIR, subprocess_env
from tests.faults.tally import Tally

SCENARIO = '''
from tests.faults.tally import ROWS, Tally


def test_a_scenario():
    ROWS.append(Tally("a scenario in a worker", expected=3, once=3))
'''


def test_the_table_lists_the_scenarios_that_ran_in_xdist_workers(tmp_path):
    # The suite's layout: the root conftest's plugins, the scenario a folder below it.
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_plugins  # noqa: F401\n")
    (tmp_path / "faults").mkdir()
    (tmp_path / "faults" / "conftest.py").write_text("")
    (tmp_path / "faults" / "test_scenario.py").write_text(SCENARIO)
    env = subprocess_env(DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(PROJECT_DIR))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "1", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout.split("fault suite: slots per scenario")[-1]
    assert Tally("a scenario in a worker", expected=3, once=3).row() in table, result.stdout
