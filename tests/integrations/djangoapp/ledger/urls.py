from django.urls import path

from . import views

urlpatterns = [
    path("v1/entries", views.entries),
    path("v1/entries/<envroute_id:entry_id>", views.entry),
    path("v1/cross/<str:how>", views.cross),
    path("v1/own-raw", views.own_raw),
]
