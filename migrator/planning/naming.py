"""Target names: RFC 1123 DNS labels, unique within the plan.

A VM's name becomes a Kubernetes object name: lower-case letters, digits and '-', at most
63 characters, starting and ending with a letter or digit. Two VMs whose names sanitise to
the same label get numbered suffixes; the original name is kept as an annotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LABEL = 63
_VALID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_INVALID_RUN = re.compile(r"[^a-z0-9]+")


def is_valid_name(name: str) -> bool:
    return bool(_VALID.match(name))


def sanitize(name: str, fallback: str = "vm") -> str:
    """'Fedora 20' → 'fedora-20'; 'SQL_Server.prod' → 'sql-server-prod'."""
    label = _INVALID_RUN.sub("-", name.lower()).strip("-")[:MAX_LABEL].rstrip("-")
    return label or fallback


def with_suffix(base: str, suffix: str) -> str:
    return f"{base[: MAX_LABEL - len(suffix)].rstrip('-')}{suffix}"


@dataclass
class NameAssignment:
    source_name: str
    target_name: str
    sanitized: str  # what the name sanitised to before any collision suffix
    collides_with: list[str]  # other source names that sanitised to the same label


def assign_names(source_names: Iterable[str]) -> list[NameAssignment]:
    """Give each source name a unique RFC 1123 label, in order; the first keeps the plain label."""
    names = list(source_names)
    sanitized = [sanitize(n) for n in names]
    by_label: dict[str, list[str]] = {}
    for name, label in zip(names, sanitized, strict=True):
        by_label.setdefault(label, []).append(name)
    taken: set[str] = set()
    result: list[NameAssignment] = []
    for name, label in zip(names, sanitized, strict=True):
        target, number = label, 1
        while target in taken:
            number += 1
            target = with_suffix(label, f"-{number}")
        taken.add(target)
        others = [n for n in by_label[label] if n != name]
        result.append(NameAssignment(name, target, label, others))
    return result


def claim_name(target_name: str, index: int) -> str:
    """The claim name of the VM's index-th disk (0-based): '<vm>-disk-<n>'."""
    return with_suffix(target_name, f"-disk-{index}")
