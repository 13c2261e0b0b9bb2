from django.urls import path

from governance import risk_views

urlpatterns = [
    path("", risk_views.risk_list, name="risk-list"),
    path("remediation/", risk_views.risk_remediation, name="risk-remediation"),
    path("detections/<int:detection_id>/<str:decision>/", risk_views.risk_detection_decide,
         name="risk-detection-decide"),
    path("<int:agent_id>/", risk_views.risk_agent, name="risk-agent"),
    path("<int:agent_id>/compromised/", risk_views.risk_agent_compromised, name="risk-agent-compromised"),
]
