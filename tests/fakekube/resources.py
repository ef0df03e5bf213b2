"""The resource types the fake server serves: built-ins and those registered by CustomResourceDefinitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESOURCE_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]

# Field selectors every resource accepts.
COMMON_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass
class ResourceType:
    group: str  # "" for the core group
    version: str  # the version this entry is served at
    plural: str
    kind: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    subresources: list[str] = field(default_factory=list)  # e.g. ["status", "binding"]
    categories: list[str] = field(default_factory=list)
    fields: tuple[str, ...] = ()  # extra field-selector labels besides metadata.name / metadata.namespace
    custom: bool = False  # served from a CustomResourceDefinition
    versions: list[str] = field(default_factory=list)  # every served version (CRDs); storage shares one bucket
    schema: dict[str, Any] | None = None  # openAPIV3Schema for this version (CRDs)
    selectable_fields: dict[str, str] = field(default_factory=dict)  # CRD spec.selectableFields: label -> jsonPath
    printer_columns: list[dict[str, Any]] = field(default_factory=list)  # CRD additionalPrinterColumns

    @property
    def key(self) -> tuple[str, str]:
        """Storage bucket: every version of a group/plural shares its objects, as in etcd."""
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {
                "name": self.plural,
                "singularName": self.singular,
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": RESOURCE_VERBS,
                **({"shortNames": self.short_names} if self.short_names else {}),
                **({"categories": self.categories} if self.categories else {}),
                "storageVersionHash": "",
            }
        ]
        for sub in self.subresources:
            kind, verbs = self.kind, SUBRESOURCE_VERBS
            if sub == "binding":
                kind, verbs = "Binding", ["create"]
            elif sub == "exec":
                kind, verbs = "PodExecOptions", ["create", "get"]
            elif sub == "finalize":
                verbs = ["update"]
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": kind,
                    "verbs": verbs,
                }
            )
        return entries


def _b(
    group: str, plural: str, kind: str, namespaced: bool = True, short: list[str] | None = None, **kw: Any
) -> ResourceType:
    version = kw.pop("version", "v1")
    return ResourceType(group, version, plural, kind, namespaced, short or [], versions=[version], **kw)


POD_SUBRESOURCES = ["status", "binding", "exec"]
POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def builtin_resources() -> list[ResourceType]:
    return [
        _b("", "namespaces", "Namespace", False, ["ns"], subresources=["status", "finalize"], fields=("status.phase",)),
        _b("", "pods", "Pod", True, ["po"], subresources=POD_SUBRESOURCES, categories=["all"], fields=POD_FIELDS),
        _b("", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], subresources=["status"]),
        _b("", "persistentvolumes", "PersistentVolume", False, ["pv"], subresources=["status"]),
        _b("", "events", "Event", True, ["ev"], fields=EVENT_FIELDS),
        _b("", "configmaps", "ConfigMap", True, ["cm"]),
        _b("", "secrets", "Secret", True, [], fields=("type",)),
        _b("", "serviceaccounts", "ServiceAccount", True, ["sa"]),
        _b("", "nodes", "Node", False, ["no"], subresources=["status"], fields=("spec.unschedulable",)),
        _b("", "services", "Service", True, ["svc"], subresources=["status"], categories=["all"]),
        _b("", "endpoints", "Endpoints", True, ["ep"]),
        _b("apps", "deployments", "Deployment", True, ["deploy"], subresources=["status"], categories=["all"]),
        _b("apps", "daemonsets", "DaemonSet", True, ["ds"], subresources=["status"], categories=["all"]),
        _b("apps", "replicasets", "ReplicaSet", True, ["rs"], subresources=["status"], categories=["all"]),
        _b("apps", "statefulsets", "StatefulSet", True, ["sts"], subresources=["status"], categories=["all"]),
        _b("batch", "jobs", "Job", True, [], subresources=["status"], categories=["all"]),
        _b("rbac.authorization.k8s.io", "roles", "Role", True),
        _b("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", True),
        _b("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", False),
        _b("rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", False),
        _b(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            ["crd", "crds"],
            subresources=["status"],
        ),
        _b("coordination.k8s.io", "leases", "Lease", True),
        _b("storage.k8s.io", "storageclasses", "StorageClass", False, ["sc"]),
    ]


class Registry:
    """Resource types by (group, version, plural), with discovery documents."""

    def __init__(self) -> None:
        self._by_gvp: dict[tuple[str, str, str], ResourceType] = {}
        for rt in builtin_resources():
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_gvp[(rt.group, rt.version, rt.plural)] = rt

    def remove_custom(self, group: str, plural: str) -> None:
        for key in [k for k, rt in self._by_gvp.items() if rt.custom and k[0] == group and k[2] == plural]:
            del self._by_gvp[key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvp.get((group, version, plural))

    def any_version(self, group: str, plural: str) -> ResourceType | None:
        for (g, _v, p), rt in self._by_gvp.items():
            if g == group and p == plural:
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for (g, v, _p), rt in self._by_gvp.items():
            if g == group and v == version and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._by_gvp.values())

    def group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for g, v, _p in self._by_gvp:
            if g and v not in groups.setdefault(g, []):
                groups[g].append(v)
        return groups

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources = [rt for (g, v, _p), rt in self._by_gvp.items() if g == group and v == version]
        if not resources:
            return None
        entries = [e for rt in sorted(resources, key=lambda r: r.plural) for e in rt.discovery()]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        ordered = sorted(versions, key=version_priority)
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in sorted(self.group_versions())]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [g for g in groups if g]}


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {"": 0, None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def resource_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v for v in spec.get("versions") or [] if v.get("served", True)]
    out = []
    for v in served:
        subresources = []
        sub = v.get("subresources") or {}
        if "status" in sub:
            subresources.append("status")
        if "scale" in sub:
            subresources.append("scale")
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        selectable = {f["jsonPath"].lstrip("."): f["jsonPath"] for f in v.get("selectableFields") or []}
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=list(names.get("shortNames") or []),
                subresources=subresources,
                categories=list(names.get("categories") or []),
                custom=True,
                versions=[x["name"] for x in served],
                schema=schema,
                selectable_fields=selectable,
                printer_columns=list(v.get("additionalPrinterColumns") or []),
            )
        )
    return out
