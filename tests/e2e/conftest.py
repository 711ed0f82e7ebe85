# The fixtures of these tests (start_process, app_env) are in tests/conftest.py, shared with
# tests/faults/. The name below stays importable from here for the tests that import it.
from tests.conftest import database_url_of_this_test

__all__ = ["database_url_of_this_test"]
