"""Seed the permission catalog and the directory roles.

The permissions are the real Microsoft Graph / Entra, Intune, Defender XDR, Sentinel (Log Analytics) and
Purview names that the Security Copilot agents in shared/fixtures/manifests need (their skills read users,
groups, applications and service principals, sign-in and audit logs, risky users and service principals,
Conditional Access policies, access reviews, Intune devices, Defender incidents and alerts, Sentinel data,
Purview alerts and data risk), plus the privileged ones that must never reach an agent (R4) and the portal's
own API scopes. Each directory role carries the delegated data rights its holders get.
"""

from django.db import migrations

BOTH = ("application", "delegated")
APP = ("application",)
ORGANISATION_READ_DESCRIPTION = ("Read every workspace through the portal API, not only the agent's own (granted only "
                                 "through an access package Global Administrators approve)")

# name, product, description, privileged, kinds
PERMISSIONS = [
    # Microsoft Entra / Microsoft Graph
    ("User.Read.All", "entra", "Read all users' full profiles", False, BOTH),
    ("Group.Read.All", "entra", "Read all groups", False, BOTH),
    ("GroupMember.Read.All", "entra", "Read all group memberships", False, BOTH),
    ("Directory.Read.All", "entra", "Read directory data", False, BOTH),
    ("Device.Read.All", "entra", "Read all devices registered in Entra ID", False, BOTH),
    ("Application.Read.All", "entra", "Read all applications and service principals", False, BOTH),
    ("AuditLog.Read.All", "entra", "Read all audit log and sign-in data", False, BOTH),
    ("Reports.Read.All", "entra", "Read all usage reports", False, BOTH),
    ("Policy.Read.All", "entra", "Read the organisation's policies, including Conditional Access", False, BOTH),
    ("Policy.Read.ConditionalAccess", "entra", "Read Conditional Access policies", False, BOTH),
    ("IdentityRiskyUser.Read.All", "entra", "Read identity risky user information", False, BOTH),
    ("IdentityRiskyServicePrincipal.Read.All", "entra", "Read risky service principal information", False, BOTH),
    ("IdentityRiskEvent.Read.All", "entra", "Read identity risk event information", False, BOTH),
    ("RoleManagement.Read.Directory", "entra", "Read directory role definitions and assignments", False, BOTH),
    ("AccessReview.Read.All", "entra", "Read all access reviews", False, BOTH),
    ("AccessReview.ReadWrite.All", "entra", "Manage access reviews and record decisions", False, BOTH),
    ("DelegatedPermissionGrant.Read.All", "entra", "Read delegated permission grants", False, BOTH),
    ("UserAuthenticationMethod.Read.All", "entra", "Read all users' authentication methods", False, BOTH),
    ("Directory.ReadWrite.All", "entra", "Read and write directory data", True, BOTH),
    ("RoleManagement.ReadWrite.Directory", "entra", "Read and write directory role assignments", True, BOTH),
    ("AppRoleAssignment.ReadWrite.All", "entra", "Grant application permissions to any app", True, BOTH),
    ("Application.ReadWrite.All", "entra", "Read and write all applications and their credentials", True, BOTH),
    ("Policy.ReadWrite.ConditionalAccess", "entra", "Read and write Conditional Access policies", True, BOTH),
    ("User.ReadWrite.All", "entra", "Read and write all users' full profiles", True, BOTH),
    # Microsoft Intune
    ("DeviceManagementManagedDevices.Read.All", "intune", "Read Intune managed devices", False, BOTH),
    ("DeviceManagementConfiguration.Read.All", "intune", "Read Intune device configuration and policies", False,
     BOTH),
    ("DeviceManagementApps.Read.All", "intune", "Read Intune apps", False, BOTH),
    ("DeviceManagementRBAC.Read.All", "intune", "Read Intune RBAC settings", False, BOTH),
    ("DeviceManagementManagedDevices.ReadWrite.All", "intune", "Read and write Intune managed devices", False,
     BOTH),
    ("DeviceManagementManagedDevices.PrivilegedOperations.All", "intune",
     "Perform user-impacting remote actions (wipe, retire) on Intune devices", True, BOTH),
    # Microsoft Defender XDR
    ("SecurityIncident.Read.All", "defender", "Read security incidents", False, BOTH),
    ("SecurityIncident.ReadWrite.All", "defender", "Read and update security incidents", False, BOTH),
    ("SecurityAlert.Read.All", "defender", "Read security alerts (Defender and Purview alerts)", False, BOTH),
    ("SecurityEvents.Read.All", "defender", "Read the organisation's security events", False, BOTH),
    ("ThreatHunting.Read.All", "defender", "Run advanced hunting queries", False, BOTH),
    ("ThreatIntelligence.Read.All", "defender", "Read threat intelligence, including vulnerability articles",
     False, BOTH),
    ("SecurityIdentitiesHealth.Read.All", "defender", "Read Defender for Identity health issues", False, BOTH),
    ("Machine.Read.All", "defender", "Defender for Endpoint: read machine information", False, APP),
    ("Vulnerability.Read.All", "defender", "Defender for Endpoint: read vulnerability information", False, APP),
    # Microsoft Sentinel (Log Analytics API)
    ("Data.Read", "sentinel", "Read Log Analytics workspace data (Microsoft Sentinel tables)", False, BOTH),
    # Microsoft Purview
    ("InformationProtectionPolicy.Read.All", "purview", "Read sensitivity labels and label policies", False, BOTH),
    ("RecordsManagement.Read.All", "purview", "Read records management configuration", False, BOTH),
    ("eDiscovery.Read.All", "purview", "Read eDiscovery cases", False, BOTH),
    ("AuditLogsQuery.Read.All", "purview", "Search the unified audit log", False, BOTH),
    ("InformationProtectionContent.Sign.All", "purview", "Sign digital content for protection", False, APP),
    # The portal's own API
    ("Portal.Agents.Read.All", "portal", "Read agents, blueprints and their governance state", False, BOTH),
    ("Portal.Agents.ReadWrite.All", "portal", "Manage agents through the portal API", True, BOTH),
    ("Portal.Audit.Read.All", "portal", "Read the portal's audit trail", False, BOTH),
    ("Portal.Governance.Read.All", "portal", "Read access packages, reviews and policies", False, BOTH),
    ("Portal.Read.All", "portal", ORGANISATION_READ_DESCRIPTION, False, APP),  # also 0005, for databases seeded before
]

SECURITY_READS = [
    "SecurityIncident.Read.All", "SecurityAlert.Read.All", "SecurityEvents.Read.All", "ThreatHunting.Read.All",
    "ThreatIntelligence.Read.All", "SecurityIdentitiesHealth.Read.All", "Data.Read",
    "IdentityRiskyUser.Read.All", "IdentityRiskyServicePrincipal.Read.All", "IdentityRiskEvent.Read.All",
    "AuditLog.Read.All", "Policy.Read.All", "Policy.Read.ConditionalAccess", "User.Read.All", "Group.Read.All",
    "Directory.Read.All", "Application.Read.All", "Device.Read.All", "Reports.Read.All",
    "RoleManagement.Read.Directory", "Portal.Agents.Read.All", "Portal.Audit.Read.All",
    "Portal.Governance.Read.All",
]
ALL_READS = [name for name, _product, _desc, _priv, kinds in PERMISSIONS
             if "delegated" in kinds and (".Read." in name or name.endswith(".Read"))]

# key, name, description, privileged (Entra's PRIVILEGED tag), delegated rights ("*" = every permission)
ROLES = [
    ("global-administrator", "Global Administrator",
     "Manages every aspect of the directory and approves partner agents. Inherited owner of every workspace.",
     True, ["*"]),
    ("privileged-role-administrator", "Privileged Role Administrator",
     "Manages directory role assignments.", True,
     ["RoleManagement.Read.Directory", "RoleManagement.ReadWrite.Directory", "Directory.Read.All",
      "User.Read.All", "Application.Read.All", "AppRoleAssignment.ReadWrite.All", "Policy.Read.All"]),
    ("security-administrator", "Security Administrator",
     "Manages security features and reads security data. Inherited owner of every workspace.", True,
     [*SECURITY_READS, "SecurityIncident.ReadWrite.All", "Policy.ReadWrite.ConditionalAccess",
      "AccessReview.Read.All", "AccessReview.ReadWrite.All", "DelegatedPermissionGrant.Read.All"]),
    ("compliance-administrator", "Compliance Administrator",
     "Manages compliance and data protection (Purview). Inherited owner of every workspace.", False,
     ["InformationProtectionPolicy.Read.All", "RecordsManagement.Read.All", "eDiscovery.Read.All",
      "AuditLogsQuery.Read.All", "AuditLog.Read.All", "SecurityAlert.Read.All", "User.Read.All",
      "Portal.Audit.Read.All", "Portal.Governance.Read.All"]),
    ("security-operator", "Security Operator",
     "Investigates and responds to security incidents.", True,
     [*SECURITY_READS, "SecurityIncident.ReadWrite.All"]),
    ("security-reader", "Security Reader", "Reads security information and reports.", True, SECURITY_READS),
    ("global-reader", "Global Reader", "Reads everything a Global Administrator can, changes nothing.", True,
     ALL_READS),
    ("intune-administrator", "Intune Administrator", "Manages Intune devices and policies.", True,
     ["DeviceManagementManagedDevices.Read.All", "DeviceManagementConfiguration.Read.All",
      "DeviceManagementApps.Read.All", "DeviceManagementRBAC.Read.All",
      "DeviceManagementManagedDevices.ReadWrite.All", "Device.Read.All", "User.Read.All", "Group.Read.All"]),
    ("conditional-access-administrator", "Conditional Access Administrator",
     "Manages Conditional Access policies.", True,
     ["Policy.Read.All", "Policy.Read.ConditionalAccess", "Policy.ReadWrite.ConditionalAccess",
      "Application.Read.All", "User.Read.All", "Group.Read.All"]),
]


def seed(apps, schema_editor):
    Permission = apps.get_model("portal", "Permission")
    DirectoryRole = apps.get_model("portal", "DirectoryRole")
    for name, product, description, privileged, kinds in PERMISSIONS:
        for kind in kinds:
            Permission.objects.update_or_create(
                name=name, kind=kind,
                defaults={"product": product, "description": description, "privileged": privileged},
            )
    delegated = {p.name: p for p in Permission.objects.filter(kind="delegated")}
    for key, name, description, privileged, rights in ROLES:
        role, _ = DirectoryRole.objects.update_or_create(
            key=key, defaults={"name": name, "description": description, "privileged": privileged}
        )
        names = list(delegated) if rights == ["*"] else rights
        role.permissions.set([delegated[n] for n in names])


def unseed(apps, schema_editor):
    apps.get_model("portal", "DirectoryRole").objects.all().delete()
    apps.get_model("portal", "Permission").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
