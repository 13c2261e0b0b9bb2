from django.http import Http404
from django.urls import path


def _placeholder(request):  # replaced by the risk views
    raise Http404


urlpatterns = [path("", _placeholder, name="risk-list")]
