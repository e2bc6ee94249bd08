"""API failures of the emulator, rendered as the `v1 Status` bodies kube-apiserver sends.

Clients key on these bodies: Kopf on `code`, client-go on `reason` and `details.causes`, and kubectl
prints `The Deployment "x" is invalid: …` from them. So the shapes below follow the apiserver exactly.
"""

from __future__ import annotations

from typing import Any

from deploymind.sandbox.kube.field_errors import FieldError


class ApiError(Exception):
    """A request the emulator refuses: `code` is the HTTP status, `reason` the Status reason."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

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
        if self.details:
            body["details"] = self.details
        return body


def qualified(kind: str, group: str) -> str:
    """`schema.GroupKind.String()`: `Deployment.deploymind.io`, or `Secret` for the core group."""
    return f"{kind}.{group}" if group else kind


def not_found(plural: str, group: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(404, "NotFound", f'{resource} "{name}" not found',
                    {"name": name, "group": group, "kind": plural})


def resource_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")


def already_exists(plural: str, group: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural})


def conflict(plural: str, group: str, name: str) -> ApiError:
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid: one cause per field error, message `Kind.group "name" is invalid: …`."""
    listed = f"[{', '.join(str(e) for e in errors)}]" if len(errors) > 1 else str(errors[0])
    return ApiError(
        422, "Invalid", f'{qualified(kind, group)} "{name}" is invalid: {listed}',
        {
            "name": name, "group": group, "kind": kind,
            "causes": [{"reason": e.type.reason, "message": e.body, "field": e.field} for e in errors],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted '
                    f'media types include: application/json, application/yaml (got "{content_type}")')


def method_not_allowed(verb: str, plural: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource "
                    f"({verb} {plural})")
