from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from emails.api.views_errors import api_or_html_404, api_or_html_500
from emails.views import healthz

urlpatterns = [
    path("v1/", include("emails.api.urls")),
    path("v1/openapi.yaml", SpectacularAPIView.as_view(), name="openapi-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="swagger-ui"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("t/", include("emails.tracking_urls")),
    path("keys/", include("apikeys.urls")),
    path("emails/", include("emails.urls")),
    path("senders/", include("emails.senders_urls")),
    path("suppressions/", include("emails.suppressions_urls")),
    # Last: the portal's root pages (dashboard, login, members, audit log).
    path("", include("accounts.urls")),
]

handler404 = api_or_html_404
handler500 = api_or_html_500
