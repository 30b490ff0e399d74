from django.urls import path

from . import views

urlpatterns = [
    path("charges", views.charges, name="charges"),
    path("charges/<str:charge_id>", views.charge, name="charge"),
]
