"""URL routes: the REST API, its schema and docs, operations endpoints and the admin."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
