"""RFC 9457 problem details: every error the API returns, with a machine `code`.

Clients branch on `code` (stable, SCREAMING_SNAKE) rather than on `title` or `detail`, which
are for people and may change wording.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_MEDIA_TYPE = "application/problem+json"

# code -> (HTTP status, title)
CATALOGUE: dict[str, tuple[int, str]] = {
    "BAD_REQUEST": (400, "The request is malformed"),
    "IDEMPOTENCY_KEY_REQUIRED": (400, "Writes need an Idempotency-Key header"),
    "UNAUTHORIZED": (401, "A valid device bearer token is required"),
    "NOT_FOUND": (404, "No such resource"),
    "ITEM_NOT_FOUND": (404, "No item with that SKU"),
    "LOCATION_NOT_FOUND": (404, "No location with that code"),
    "STOCK_NOT_FOUND": (404, "That SKU is not stocked at that location"),
    "PICK_NOT_FOUND": (404, "No pick task with that id"),
    "OPERATOR_NOT_FOUND": (404, "No active operator with that id"),
    "METHOD_NOT_ALLOWED": (405, "Method not allowed on this resource"),
    "NOT_ACCEPTABLE": (406, "Only JSON responses are available"),
    "INSUFFICIENT_STOCK": (409, "Not enough stock at the source location"),
    "IDEMPOTENCY_IN_PROGRESS": (409, "A request with this Idempotency-Key is still running"),
    "PICK_NOT_OPEN": (409, "The pick task is already closed"),
    "LOCATION_ON_HOLD": (409, "Stock in QA hold cannot be moved or picked by voice"),
    "ZONE_MISMATCH": (409, "The destination is in the wrong storage zone for this item"),
    "STALE_COUNT": (412, "The stock changed since the count started"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Send the body as application/json"),
    "VALIDATION_FAILED": (422, "The request has invalid fields"),
    "IDEMPOTENCY_KEY_REUSED": (422, "This Idempotency-Key was used for a different request"),
    "SAME_LOCATION": (422, "Source and destination are the same location"),
    "OVER_PICK": (422, "More units than the pick task asks for"),
    "CHECK_DIGIT_MISMATCH": (422, "The check digits do not match the location"),
    "CHECK_DIGIT_LOCKED": (429, "Too many wrong check digits at this location"),
    "INTERNAL": (500, "Internal error"),
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. body.quantity")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, extended with a machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI identifying the problem type")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(description="Stable machine code, e.g. INSUFFICIENT_STOCK")
    instance: str | None = Field(default=None, description="The request path")
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raised anywhere in the API to answer with a problem+json response."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown problem code {code!r}")
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status, self.title = CATALOGUE[code]
        self.detail = detail
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": problem_type(self.code),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def encoded(self, instance: str | None = None) -> bytes:
        return json.dumps(self.body(instance), separators=(",", ":")).encode()


def problem_type(code: str) -> str:
    return "urn:warehouse-voice:problem:" + code.lower().replace("_", "-")
