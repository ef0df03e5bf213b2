"""RFC 1123 target names, unique within a plan."""

from __future__ import annotations

from migrator.planning.naming import assign_names, claim_name, is_valid_name, sanitize


def test_sanitize() -> None:
    assert sanitize("Fedora 20") == "fedora-20"
    assert sanitize("SQL_Server.prod (old)") == "sql-server-prod-old"
    assert sanitize("---") == "vm"
    long = sanitize("A" * 100)
    assert len(long) == 63 and is_valid_name(long)
    assert is_valid_name(sanitize("x" * 62 + "-y"))


def test_unique_names_with_suffixes() -> None:
    names = assign_names(["Web 1", "web-1", "WEB_1", "db"])
    assert [n.target_name for n in names] == ["web-1", "web-1-2", "web-1-3", "db"]
    assert names[0].collides_with == ["web-1", "WEB_1"]
    assert names[3].collides_with == []
    long = assign_names(["a" * 70, "A" * 70])
    assert all(len(n.target_name) <= 63 and is_valid_name(n.target_name) for n in long)
    assert long[0].target_name != long[1].target_name


def test_claim_names() -> None:
    assert claim_name("web-1", 0) == "web-1-disk-0"
    assert is_valid_name(claim_name("a" * 63, 12)) and len(claim_name("a" * 63, 12)) <= 63
