"""The error hierarchy: each error knows its HTTP status and problem type (RFC 9457)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RouterError(Exception):
    """Base of every error the router reports to a client."""

    status: int = 500
    type: str = "about:blank"
    title: str = "Router error"
    retry_after_s: int | None = None
    """Sent as `Retry-After` when set: the client may repeat the request after that long."""
    closes_connection: bool = False
    """The connection is closed after the answer (what follows on it cannot be read)."""
    challenge: str | None = None
    """Sent as `WWW-Authenticate` when set (a 401 must say how to authenticate, RFC 9110)."""

    def __init__(self, detail: str, errors: list[FieldError] | None = None, **members: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.members = members
        """Extension members of the problem document (RFC 9457), e.g. `interaction_id`."""


class ValidationError(RouterError):
    status = 422
    type = "/problems/validation"
    title = "Invalid request"

    @classmethod
    def of(cls, field: str, message: str) -> ValidationError:
        """A validation error about one field."""
        return cls(f"{field}: {message}", [FieldError(field, message)])


class ConfigError(ValidationError):
    title = "Invalid configuration"


class NotFound(RouterError):
    status = 404
    type = "/problems/not-found"
    title = "Not found"


class Conflict(RouterError):
    status = 409
    type = "/problems/conflict"
    title = "State conflict"


class OfferExpired(Conflict):
    type = "/problems/offer-expired"
    title = "Offer expired"


class NotOffered(Conflict):
    type = "/problems/not-offered"
    title = "Not offered to this agent"


class NotConnected(Conflict):
    type = "/problems/not-connected"
    title = "Not connected to this agent"


class QueueFull(Conflict):
    type = "/problems/queue-full"
    title = "Queue full"


class IdempotencyConflict(Conflict):
    type = "/problems/idempotency-conflict"
    title = "Same id, different request"


class TooManyRequests(RouterError):
    status = 429
    type = "/problems/too-many-requests"
    title = "Too many requests"
    retry_after_s = 5


class StoreUnavailable(RouterError):
    """The store did not answer in time or cannot be reached: the outcome of a change is unknown."""

    status = 503
    type = "/problems/store-unavailable"
    title = "Store unavailable"
    retry_after_s = 1


class StoreRefused(StoreUnavailable):
    """The store answered but refused the call before running it (out of memory, cannot persist,
    too few replicas, busy, a replica): nothing was changed."""

    type = "/problems/store-refused"
    title = "Store refused the request"
    retry_after_s = 5
