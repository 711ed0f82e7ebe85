"""Being built (issue 12): /metrics and /healthz."""

from django.http import HttpResponse


def metrics_view(request):
    return HttpResponse("not built yet\n", status=503, content_type="text/plain")


def healthz_view(request):
    return HttpResponse("not built yet\n", status=503, content_type="text/plain")
