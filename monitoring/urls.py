"""The monitoring endpoints outside the admin (/metrics for Prometheus, /healthz for load
balancers) and the dashboard inside it."""

from django.contrib import admin
from django.urls import path

from monitoring import dashboard, metrics

urlpatterns = [
    path("metrics", metrics.metrics_view, name="metrics"),
    path("healthz", metrics.healthz_view, name="healthz"),
    # Before the admin's own URLs (wiring/urls.py), behind its login and permissions.
    path("admin/monitoring/dashboard/", admin.site.admin_view(dashboard.dashboard_view), name="monitoring_dashboard"),
]
