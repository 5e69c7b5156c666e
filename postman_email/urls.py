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
]

handler404 = api_or_html_404
handler500 = api_or_html_500
