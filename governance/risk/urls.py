"""Risk pages, mounted under ``/governance/``."""

from django.urls import path

from governance.risk import views

urlpatterns = [
    path("risk/", views.risk_list, name="risk-list"),
    path("risk/remediation/", views.risk_remediation, name="risk-remediation"),
    path("risk/detections/<int:detection_id>/<str:decision>/", views.risk_detection_decide,
         name="risk-detection-decide"),
    path("risk/<int:agent_id>/", views.risk_agent, name="risk-agent"),
    path("risk/<int:agent_id>/compromised/", views.risk_agent_compromised, name="risk-agent-compromised"),
]
