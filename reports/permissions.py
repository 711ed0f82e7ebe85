"""Who may have a report's SQL run: one predicate for writing SQL sections, previewing a report
that has them, re-sending or running it by hand, and changing who receives it.

A SQL section's query runs with the data source's own access (the site's database for
`default`), not the access of whoever asked: a staff member who may only view reports read
session keys from a preview, and one with change permission could have added their own
address as a recipient. Reports without SQL sections keep the usual admin permissions.

Superusers only, not a permission of its own: the right to run any query with the site's
database access is a superuser's power whatever it is called, and a permission of the reports
app would come with "every reports permission", which staff who manage reports are given.
"""

RUN_SQL_REFUSED = "Only superusers may {}."


def may_run_report_sql(user) -> bool:
    """Whether `user` may write SQL sections and have reports holding them built or sent."""
    return user is not None and user.is_active and user.is_superuser


def may_build_report(user, report) -> bool:
    """Whether `user` may have `report` built or sent now (preview, re-send, run now)."""
    return may_run_report_sql(user) or not report.has_sql_sections()
