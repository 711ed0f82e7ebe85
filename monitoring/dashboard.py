"""Being built (issue 12): dashboard."""

from django.http import HttpResponse


def dashboard_view(request):
    return HttpResponse("not built yet\n", status=503, content_type="text/plain")
