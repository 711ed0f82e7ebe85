"""What the jobs app declares (shared.declarations): the short forms of its tasks' arguments on
a schedule's page, in place of the kwargs JSON."""

SCHEDULE_ARGUMENT_FORMS = ["jobs.admin_forms.HttpCallFields", "jobs.admin_forms.RunCommandFields"]
