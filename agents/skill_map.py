"""The shipped skill map: who publishes each Security Copilot plugin, whose data it reads, and which application
permissions each skill needs.

This is data, read by ``catalog.load_skills`` when it fills the catalog. Owners change the map afterwards through
``catalog.skill_set_permissions`` (audited); ``load_skills`` only fills skills that nobody has mapped yet, so a
rerun never undoes an owner's decision.

Every permission named here is an application permission of the seeded catalog
(``portal/migrations/0002_seed_catalog.py``) and none is privileged (R4); ``tests/agents/test_catalog.py`` holds
both. Where Security Copilot needs a right the catalog does not hold (Azure RBAC on a firewall, EASM workspace
reader, Entra ``LifecycleWorkflows.Read.All``, …) the nearest catalog right is used and a comment says so, or the
skill is left unmapped for an owner to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.choices import PublisherKind
from portal.choices import Product

MICROSOFT = "Microsoft"

#: Microsoft plugins and the product whose data they read ("" when they read no Microsoft product's data:
#: reasoning over the prompt or session, public documentation, the web, or Azure resources outside the catalog).
MICROSOFT_PLUGINS: dict[str, str] = {
    "Entra": Product.ENTRA,
    "MSGraph": Product.ENTRA,
    "NL2API.Assistant": Product.ENTRA,  # natural language → Microsoft Graph (users, groups, CA, sign-ins)
    "Intune": Product.INTUNE,
    "Purview": Product.PURVIEW,
    "M365": Product.DEFENDER,  # the Microsoft Defender XDR plugin (GetDefender* skills)
    "Microsoft.M365D.PhishingTriageAgent": Product.DEFENDER,
    "ThreatIntelligence.DTI": Product.DEFENDER,  # Defender Threat Intelligence
    "EASM": Product.DEFENDER,  # Defender External Attack Surface Management
    "Fusion": Product.DEFENDER,  # incident enrichment from Defender for Endpoint (and Intune)
    "NL2KQLDefenderSentinel": Product.DEFENDER,  # advanced hunting; it also reads Sentinel tables (Data.Read)
    "Sentinel": Product.SENTINEL,
    "Microsoft.SecurityCopilot.AppRiskAgent": "",  # product not documented; the owner maps it
    "NL2KQL": "",
    "KnowledgeBase": "",
    "LearnKnowledgeService": "",
    "Generic": "",
    "Web": "",
    "FileUploads": "",
    "Agents": "",
    "Investigation": "",
    "Visualization": "",
    "CodeExecutor": "",
    "DOTNET": "",
    "Orchestrator.InteractiveAgent": "",
    "Orchestrator.Common": "",
    "Surface": "",
    "AzureWorkbooks": "",
    "AzureFirewall": "",
    "AzureAiSearch": "",
    "WAF": "",  # Azure Web Application Firewall
}

#: Partner plugins and their publishers. A partner skill reads the partner's own product, never Microsoft data.
PARTNER_PLUGINS: dict[str, str] = {
    "AbuseIPDB": "AbuseIPDB",
    "AviatrixPlugin": "Aviatrix",
    "CIRCL": "CIRCL",
    "censys_platform": "Censys",
    "CheckPhish": "CheckPhish",
    "CrowdSecTI": "CrowdSec",
    "CyberArk": "CyberArk",
    "Cybersixgill": "Cybersixgill",
    "CywareRespond": "Cyware",
    "Darktrace": "Darktrace",
    "DruvaSentinelPlugin": "Druva",  # Druva's own "Sentinel" product, not Microsoft Sentinel
    "forescoutrem": "Forescout",
    "GreyNoiseCommunity": "GreyNoise",
    "GreyNoiseEnterprise": "GreyNoise",
    "HPWXP_US": "HP",
    "Intel471": "Intel 471",
    "IPGeolocation": "IPGeolocation.io",
    "IPinfo": "IPinfo",
    "Jamf": "Jamf",
    "NetskopeReportingforThreatandDataProtection": "Netskope",
    "Pure_Signal_Scout": "Team Cymru",
    "RedCanary": "Red Canary",
    "ReversingLabsSpectraAnalyze": "ReversingLabs",
    "ReversingLabsSpectraIntelligence": "ReversingLabs",
    "Saviynt": "Saviynt",
    "SecurityGuardian": "Security Guardian",
    "SGNL": "SGNL",
    "ServiceNow": "ServiceNow",
    "Shodan": "Shodan",
    "ShodanInternetDB": "Shodan",
    "Silverfort": "Silverfort",
    "Splunk": "Splunk",
    "Tanium": "Tanium",
    "TufinMate": "Tufin",
    "UrlScan": "urlscan.io",
    "ValenceSecurity": "Valence Security",
    "vederelabs": "Vedere Labs",
    "Whoisfreaks": "WhoisFreaks",
}

#: Microsoft plugins whose skills read no protected data: an empty map is intended (``needs_no_permission``).
NO_DATA_PLUGINS = frozenset({
    "Generic", "Web", "FileUploads", "Agents", "Investigation", "Visualization", "CodeExecutor", "DOTNET",
    "KnowledgeBase", "LearnKnowledgeService", "AzureWorkbooks", "Orchestrator.InteractiveAgent",
    "Orchestrator.Common",
})
# Left unmapped on purpose (an owner decides): AzureFirewall, WAF, AzureAiSearch and EASM read Azure resources
# through Azure RBAC, which the permission catalog does not model; Surface reads the Surface management portal;
# NL2KQL and Microsoft.SecurityCopilot.AppRiskAgent do not say whose data they query.

#: Skills without an explicit entry in ``SKILL_PERMISSIONS`` get their plugin's default: the least every skill of
#: that plugin reads (an Entra skill at least reads users, a Defender skill incidents and alerts, …).
PLUGIN_DEFAULT_PERMISSIONS: dict[str, list[str]] = {
    "Entra": ["User.Read.All"],
    "MSGraph": ["User.Read.All"],
    "Intune": ["DeviceManagementManagedDevices.Read.All"],
    "Purview": ["SecurityAlert.Read.All"],
    "M365": ["SecurityIncident.Read.All", "SecurityAlert.Read.All"],
    "Microsoft.M365D.PhishingTriageAgent": ["SecurityIncident.Read.All", "SecurityAlert.Read.All",
                                            "ThreatHunting.Read.All"],
    "ThreatIntelligence.DTI": ["ThreatIntelligence.Read.All"],
    "Fusion": ["SecurityIncident.Read.All"],
    "Sentinel": ["Data.Read"],
    "NL2KQLDefenderSentinel": ["ThreatHunting.Read.All", "Data.Read"],
}

_INCIDENTS = ["SecurityIncident.Read.All", "SecurityAlert.Read.All"]
_DEVICES = ["DeviceManagementManagedDevices.Read.All"]
_CONFIG = ["DeviceManagementConfiguration.Read.All"]
_APPS = ["DeviceManagementApps.Read.All"]
_DTI = ["ThreatIntelligence.Read.All"]
_CVE = ["ThreatIntelligence.Read.All", "Vulnerability.Read.All"]

#: Skill name → the application permissions it needs; ``[]`` means it reads no protected data. Covers every
#: ChildSkill of the reference manifests in ``agents/data/manifests`` that the skills list knows.
SKILL_PERMISSIONS: dict[str, list[str]] = {
    # --- Entra (Microsoft Graph) -----------------------------------------------------------------------------
    # The user details skill also shows authentication-method registration and group membership.
    "GetEntraUserDetailsV1": ["User.Read.All", "UserAuthenticationMethod.Read.All", "GroupMember.Read.All"],
    "GetEntraSignInLogsV1": ["AuditLog.Read.All"],
    "GetEntraAuditLogs": ["AuditLog.Read.All"],
    "GetEntraRiskyUsers": ["IdentityRiskyUser.Read.All"],
    "GetEntraRiskyServicePrincipals": ["IdentityRiskyServicePrincipal.Read.All"],
    "GetEntraApplication": ["Application.Read.All"],
    "GetEntraApplicationOutsideTenant": ["Application.Read.All"],
    "GetEntraServicePrincipalDetails": ["Application.Read.All"],
    "GetEntraUnusedApplication": ["Application.Read.All"],
    "GetEntraServicePrincipalPermissionsGranted": ["Application.Read.All", "DelegatedPermissionGrant.Read.All"],
    "GetEntraGroupDetailsV1": ["Group.Read.All", "GroupMember.Read.All"],
    "GetEntraDiagnosticsLogs": ["AuditLog.Read.All"],  # diagnostic settings of the activity logs
    "GetEntraNull": [],  # the fallback when no skill matches: it reads nothing
    "AccessReviewAgent": ["AccessReview.Read.All"],
    "AccessReviewAgentBeta": ["AccessReview.Read.All"],
    "FetchInProgressAccessReviewsInstancesSkill": ["AccessReview.Read.All"],
    "UserAccessReviewInProgressSkill": ["AccessReview.Read.All", "User.Read.All"],
    "AccessReviewRecommendationSkill": ["AccessReview.Read.All", "User.Read.All", "AuditLog.Read.All"],
    "GroupAccessReviewRecommendationSkill": ["AccessReview.Read.All", "GroupMember.Read.All", "User.Read.All"],
    "ApplicationAccessReviewRecommendationSkill": ["AccessReview.Read.All", "Application.Read.All",
                                                   "User.Read.All"],
    # Entitlement management has no permission in the catalog; access reviews and users are the nearest.
    "AccessPackageAccessReviewRecommendationSkill": ["AccessReview.Read.All", "User.Read.All"],
    # These record review decisions, so they need the write right on access reviews.
    "AccessReviewsInstanceDecisionSkill": ["AccessReview.ReadWrite.All"],
    "ProcessAccessReviewsInstanceSkill": ["AccessReview.ReadWrite.All"],
    # ConsolidatedLifecycleWorkflowsSkill and LifecycleWorkflowsCompareVersionsSkill need
    # LifecycleWorkflows.Read.All, which the catalog does not hold: they get the Entra default (User.Read.All).
    # --- Microsoft Graph in natural language ----------------------------------------------------------------
    "AskNL2API": ["User.Read.All", "Group.Read.All", "AuditLog.Read.All", "Policy.Read.All", "Reports.Read.All"],
    # --- Intune ---------------------------------------------------------------------------------------------
    "GetIntuneDevices": _DEVICES,
    "GetIntuneDeviceGroupMemberships": [*_DEVICES, "Group.Read.All", "GroupMember.Read.All"],
    "GetIntuneDeviceDiff": [*_DEVICES, *_CONFIG],
    "GetPoliciesPerDevice": [*_DEVICES, *_CONFIG, *_APPS],
    "GetIntuneDeviceDiscoveredOrManagedApplication": [*_DEVICES, *_APPS],
    "GetAppAndPolicyGroupTargeting": [*_CONFIG, *_APPS, "Group.Read.All"],
    "GetAppOrPolicyDeviceGroupTargeting": [*_DEVICES, *_CONFIG, *_APPS, "Group.Read.All"],
    "DescribeIntunePolicy": _CONFIG,
    "GetPolicySetting": _CONFIG,
    "GetPolicySettingUsage": _CONFIG,
    "ErrorCodeAnalyzer": _CONFIG,
    # It also deploys expedited quality updates; the catalog has no non-privileged write right for that.
    "IntuneVulnerabilityRemediationAgent": [*_DEVICES, *_CONFIG, "Vulnerability.Read.All"],
    # --- Defender XDR (M365 plugin) -------------------------------------------------------------------------
    "GetDefenderIncidents": _INCIDENTS,
    "GetDefenderIncidentReport": _INCIDENTS,
    "GetIncidentGuidedResponse": _INCIDENTS,
    "GetDefenderDeviceSummary": ["Machine.Read.All", "SecurityAlert.Read.All"],  # Machine.*: application only
    "GetDefenderIdentitySummary": ["SecurityAlert.Read.All", "ThreatHunting.Read.All"],
    "GetFileAnalysis": ["ThreatHunting.Read.All"],
    "DefenderValidateEmailFeedback": ["ThreatHunting.Read.All"],
    # --- Fusion (incident enrichment) -----------------------------------------------------------------------
    "GetIncident": _INCIDENTS,
    "GetIncidentEntities": _INCIDENTS,
    "AssessVulnerabilityImpact": ["Vulnerability.Read.All", "Machine.Read.All"],
    "EnrichIncidentWithDeviceContext": ["SecurityIncident.Read.All", "Machine.Read.All", *_DEVICES],
    "EnrichIncidentWithFileContext": ["SecurityIncident.Read.All", "ThreatHunting.Read.All"],
    "FindUserIpOrHostnameAccessRecords": ["ThreatHunting.Read.All"],
    "FindUserScriptDownloads": ["ThreatHunting.Read.All"],
    # --- Defender Threat Intelligence (other DTI skills: ThreatIntelligence.Read.All by default) -------------
    "GetCvesByKeywordSearchDti": _CVE,
    "GetCvesByIdsDti": _CVE,
    "GetCveMitigation": _CVE,
    "GetRelatedIncidentsByQuery": [*_DTI, *_INCIDENTS],
    # --- Sentinel and KQL -----------------------------------------------------------------------------------
    "NL2KQLDefenderSentinel": ["ThreatHunting.Read.All", "Data.Read"],
    "GetSentinelIncidents": ["SecurityIncident.Read.All", "Data.Read"],
    "ListSentinelWorkspaces": ["Data.Read"],
    # --- Purview --------------------------------------------------------------------------------------------
    "TriagePurviewAlerts": ["SecurityAlert.Read.All"],
    "SummarizePurviewAlert": ["SecurityAlert.Read.All", "InformationProtectionPolicy.Read.All"],
    "GetDataRiskSummary": ["SecurityAlert.Read.All", "InformationProtectionPolicy.Read.All",
                           "AuditLogsQuery.Read.All"],
    "GetUserRiskSummary": ["SecurityAlert.Read.All", "AuditLogsQuery.Read.All"],  # Insider Risk Management
    "ZoomIntoPurviewDataRisk": ["InformationProtectionPolicy.Read.All", "AuditLogsQuery.Read.All"],
    "ZoomIntoPurviewUserRisk": ["AuditLogsQuery.Read.All"],
    "PolicyGapQuerySkill": ["InformationProtectionPolicy.Read.All"],
    "DataSecurityAnalytics": ["InformationProtectionPolicy.Read.All", "AuditLogsQuery.Read.All"],
    "PurviewKnowledgeBase": [],  # Purview documentation
    "DspmOutOfScope": [],  # answers prompts outside the product's scope: reads nothing
}


@dataclass(frozen=True)
class PluginClass:
    """Who publishes a plugin and whose data it reads."""

    publisher: str
    kind: str
    product: str


def classify_plugin(plugin: str) -> PluginClass:
    """Microsoft or partner, with the product for Microsoft plugins that read one product's data.

    A plugin this map does not list is Microsoft only when its name says so (``Microsoft.*``, ``Orchestrator.*``,
    ``Azure*``); anything else is treated as a partner's, the cautious side (R14 applies to partners).
    """
    if plugin in MICROSOFT_PLUGINS:
        return PluginClass(MICROSOFT, PublisherKind.MICROSOFT, MICROSOFT_PLUGINS[plugin])
    if plugin in PARTNER_PLUGINS:
        return PluginClass(PARTNER_PLUGINS[plugin], PublisherKind.PARTNER, "")
    if plugin.startswith(("Microsoft.", "Orchestrator.", "Azure")):
        return PluginClass(MICROSOFT, PublisherKind.MICROSOFT, "")
    return PluginClass(plugin, PublisherKind.PARTNER, "")


def permissions_for(plugin: str, skill: str) -> list[str] | None:
    """The shipped map for one skill: permission names, ``[]`` for "reads no protected data", or None when the
    map has no answer and an owner must decide."""
    plugin_class = classify_plugin(plugin)
    if plugin_class.kind != PublisherKind.MICROSOFT:
        return []  # a partner's skill reads the partner's product, never Microsoft data
    if skill in SKILL_PERMISSIONS:
        return list(SKILL_PERMISSIONS[skill])
    if plugin in NO_DATA_PLUGINS:
        return []
    if plugin in PLUGIN_DEFAULT_PERMISSIONS:
        return list(PLUGIN_DEFAULT_PERMISSIONS[plugin])
    return None


def all_mapped_permission_names() -> set[str]:
    """Every permission name the shipped map uses (a test checks each exists and none is privileged)."""
    names = {name for names in SKILL_PERMISSIONS.values() for name in names}
    return names | {name for names in PLUGIN_DEFAULT_PERMISSIONS.values() for name in names}
