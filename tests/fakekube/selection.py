"""Label and field selectors, with the real server's syntax and its 400 on what it does not support."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]

_KEY = r"(?:[A-Za-z0-9.\-_]+/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_label_selector(text: str | None) -> Matcher | None:
    if not text or not text.strip():
        return None
    reqs: list[Matcher] = []
    for part in _split_top(text):
        if not part:
            raise bad_request(f"unable to parse requirement: found '', expected: identifier in label selector {text!r}")
        reqs.append(_parse_requirement(part, text))

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def _parse_requirement(part: str, whole: str) -> Callable[[dict[str, str]], bool]:
    m = re.fullmatch(rf"!\s*({_KEY})", part)
    if m:
        key = m.group(1)
        return lambda labels: key not in labels
    m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)", part)
    if m:
        key, op = m.group(1), m.group(2)
        values = {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: key not in labels or labels[key] not in values
    m = re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})", part)
    if m:
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: key in labels and labels[key] == value
    m = re.fullmatch(rf"({_KEY})", part)
    if m:
        key = m.group(1)
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {part!r} in label selector {whole!r}")


def field_value(obj: Obj, label: str) -> str:
    """The string a field selector compares against: missing fields are "", booleans are true/false."""
    cur: Any = obj
    for part in label.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, list):
        return ",".join(str(x) for x in cur)
    return str(cur)


def parse_field_selector(text: str | None, supported: tuple[str, ...] | list[str]) -> Matcher | None:
    if not text or not text.strip():
        return None
    reqs: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"([^!=\s]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        label, op, value = m.group(1), m.group(2), m.group(3)
        if label not in supported:
            raise bad_request(f"field label not supported: {label}")
        reqs.append((label, op != "!=", value))

    def match(obj: Obj) -> bool:
        for label, equal, value in reqs:
            if (field_value(obj, label) == value) != equal:
                return False
        return True

    return match
