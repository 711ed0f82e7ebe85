from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET
from django.views.generic import RedirectView


@require_GET
def no_favicon(request) -> HttpResponse:
    # Every browser asks for /favicon.ico; answered 404, each visit logged a WARNING ("Not
    # Found: /favicon.ico") among the ones worth reading. No icon, said once a day per browser.
    return HttpResponse(status=204, headers={"Cache-Control": "public, max-age=86400"})


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", no_favicon),
    path("", include("monitoring.urls")),
    path("admin/", admin.site.urls),
]
