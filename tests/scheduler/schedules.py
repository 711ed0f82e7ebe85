"""Moved to tests/builders.py; kept only for tests/scheduler/test_run_recording.py, which is being
changed elsewhere. Delete this module once that file imports from tests.builders."""

from tests.builders import interval_task, with_policy

__all__ = ["interval_task", "with_policy"]
