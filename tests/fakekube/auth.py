"""Bearer-token authentication and RBAC authorization, evaluated from the Roles, ClusterRoles and bindings stored
in the fake server, with the real server's 401/403 answers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .errors import StatusError

ADMIN_TOKEN = "fakekube-token"
# Paths every authenticated user may read (the system:discovery, system:basic-user and
# system:public-info-viewer cluster roles); the health and version ones are public.
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")
DISCOVERY_PREFIXES = ("/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str

    def describe(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f'in the namespace "{self.namespace}"' if self.namespace else "at the cluster scope"
        return f'cannot {self.verb} resource "{resource}" in API group "{self.group}" {where}'


class Authenticator:
    def __init__(self) -> None:
        self.tokens: dict[str, User] = {
            ADMIN_TOKEN: User("kubernetes-admin", ("system:masters", "system:authenticated"))
        }

    def add_service_account(self, namespace: str, name: str) -> str:
        token = f"sa-{namespace}-{name}-{secrets.token_hex(8)}"
        self.tokens[token] = User(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        )
        return token

    def add_user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        token = f"user-{name}-{secrets.token_hex(8)}"
        self.tokens[token] = User(name, (*groups, "system:authenticated"))
        return token

    def authenticate(self, authorization: str | None) -> User:
        if not authorization:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return user


def _subject_matches(subject: dict[str, Any], user: User, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{ns}:{subject.get('name')}"
    if kind == "User":
        return user.name == subject.get("name")
    if kind == "Group":
        return subject.get("name") in user.groups
    return False


def _rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.group not in groups:
        return False
    resources = rule.get("resources") or []
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not (
        "*" in resources
        or wanted in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
        or (attrs.subresource and f"{attrs.resource}/*" in resources)
    ):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(attrs.name) and attrs.name in names)


def authorize(user: User, attrs: Attributes, objects: Any) -> None:
    """objects(plural, group) -> list of stored objects of that RBAC kind. Raises 403 when nothing allows it."""
    if user.is_admin:
        return
    if user is not ANONYMOUS:
        roles = {r["metadata"]["name"]: r for r in objects("clusterroles")}
        for binding in objects("clusterrolebindings"):
            if any(_subject_matches(s, user, "") for s in binding.get("subjects") or []):
                role = roles.get((binding.get("roleRef") or {}).get("name", ""))
                if role and any(_rule_allows(rule, attrs) for rule in role.get("rules") or []):
                    return
        if attrs.namespace:
            ns_roles = {
                r["metadata"]["name"]: r for r in objects("roles") if r["metadata"].get("namespace") == attrs.namespace
            }
            for binding in objects("rolebindings"):
                if binding["metadata"].get("namespace") != attrs.namespace:
                    continue
                if not any(_subject_matches(s, user, attrs.namespace) for s in binding.get("subjects") or []):
                    continue
                ref = binding.get("roleRef") or {}
                role = (roles if ref.get("kind") == "ClusterRole" else ns_roles).get(ref.get("name", ""))
                if role and any(_rule_allows(rule, attrs) for rule in role.get("rules") or []):
                    return
    qualified = attrs.resource if not attrs.group else f"{attrs.resource}.{attrs.group}"
    subject = f'"{attrs.name}" ' if attrs.name else ""
    details: dict[str, Any] = {"group": attrs.group, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    raise StatusError(
        403,
        "Forbidden",
        f'{qualified} {subject}is forbidden: User "{user.name}" {attrs.describe()}',
        details=details,
    )


def authorize_path(user: User, path: str) -> None:
    if user.is_admin or path in PUBLIC_PATHS:
        return
    if user is not ANONYMOUS and (path == "/" or path.startswith(DISCOVERY_PREFIXES)):
        return
    raise StatusError(403, "Forbidden", f'forbidden: User "{user.name}" cannot get path "{path}"')
