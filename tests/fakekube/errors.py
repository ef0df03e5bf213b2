"""API errors as the real server sends them: a `Status` object with code, reason and message."""

from __future__ import annotations

from typing import Any


class StatusError(Exception):
    """Raised anywhere in request handling; the HTTP layer turns it into a `Status` response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(qualified: str, name: str | None, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": qualified.split(".", 1)[0]}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def not_found(plural: str, group: str, name: str) -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    return StatusError(404, "NotFound", f'{qualified} "{name}" not found', details=_details(plural, name, group))


def already_exists(plural: str, group: str, name: str) -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    return StatusError(
        409, "AlreadyExists", f'{qualified} "{name}" already exists', details=_details(plural, name, group)
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        details=_details(plural, name, group),
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> StatusError:
    """causes: (reason, field, message) as in `details.causes`; reason is e.g. FieldValueInvalid."""
    qualified = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{field}: {message}" if field else message for _reason, field, message in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{field}: {message}" if field else message for _r, field, message in causes) + "]"
    return StatusError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {text}',
        details={
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(plural: str, group: str, name: str, why: str) -> StatusError:
    qualified = f"{plural}.{group}" if group else plural
    return StatusError(
        403, "Forbidden", f'{qualified} "{name}" is forbidden: {why}', details=_details(plural, name, group)
    )


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed() -> StatusError:
    return StatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def unsupported_media_type(content_type: str, accepted: list[str]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
    )
