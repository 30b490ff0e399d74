from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", views.health),
    path("v1/charges", views.charges),
    path("v1/missing", views.missing),
    path("v1/cross", views.cross_environment),
]
