"""Errors a service's rules raise; the HTTP layer answers them with the contract's status and body."""

from __future__ import annotations


class ServiceError(Exception):
    """A failure the client caused or must know about, with the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(ServiceError):
    status = 400

    def __init__(self, details: list[str]) -> None:
        super().__init__("Validation failed", details)


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403
