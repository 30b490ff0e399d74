from django.urls import path

from . import views

urlpatterns = [
    path("charges", views.charges, name="charges"),
    # envroute_id: a live id with a test key (or the reverse) is a 404 before the view runs
    path("charges/<envroute_id:charge_id>", views.charge, name="charge"),
]
