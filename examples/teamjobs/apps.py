from django.apps import AppConfig


class TeamJobsConfig(AppConfig):
    name = "examples.teamjobs"
    label = "teamjobs"
    verbose_name = "Team jobs (example)"
