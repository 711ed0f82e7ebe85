"""At a worker's start, one log line per data source saying whether reports may read through it.

A source that reports may not use (a superuser's connection, a role that can read the site's
sessions) does not stop the worker: its other jobs run, and each run's SQL section says the same
as this line. Logged at start so that the operator sees it before the first report is due.
"""

import logging

from celery.signals import worker_ready

from reports.sources import data_source_check, data_source_names

logger = logging.getLogger(__name__)


@worker_ready.connect
def data_sources_check_at_start(**_) -> None:
    for name in data_source_names():
        try:
            how = data_source_check(name)
        except Exception as error:
            logger.warning("data source %r: reports cannot read through it: %s", name, error)
        else:
            logger.info("data source %r: reports read it through %s", name, how)
