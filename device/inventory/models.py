"""Request and response bodies of the reference inventory API (they define its OpenAPI)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SKU_PATTERN = r"^[0-9]{6}$"
GTIN_PATTERN = r"^[0-9]{13}$"
LOCATION_PATTERN = r"^[A-Z0-9]{1,4}(-[A-Z0-9]{1,4}){1,4}$"
CHECK_DIGITS_PATTERN = r"^[0-9]{2,3}$"
PICK_ID_PATTERN = r"^P[0-9]{4,8}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

Sku = Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
Gtin = Annotated[str, StringConstraints(pattern=GTIN_PATTERN)]
LocationCode = Annotated[str, StringConstraints(pattern=LOCATION_PATTERN)]
CheckDigits = Annotated[str, StringConstraints(pattern=CHECK_DIGITS_PATTERN)]
PickId = Annotated[str, StringConstraints(pattern=PICK_ID_PATTERN)]
# Strict: "3", true and 3.0 are refused (422) rather than coerced; the OpenAPI says integer,
# and a client that sends a string has a bug worth hearing about before stock changes.
_AS_INTEGER = 'A JSON integer: 3, not 3.0, "3" or true.'
Quantity = Annotated[int, Field(strict=True, ge=1, le=9999, description=_AS_INTEGER)]
Count = Annotated[int, Field(strict=True, ge=0, le=9999, description=_AS_INTEGER)]


class Zone(StrEnum):
    DRY = "DRY"
    CHL = "CHL"
    FRZ = "FRZ"
    BULK = "BULK"
    QA_HOLD = "QA-HOLD"


class DamageKind(StrEnum):
    CRUSHED = "crushed"
    WET = "wet"
    TORN_PACKAGING = "torn_packaging"
    BROKEN = "broken"
    EXPIRED = "expired"
    CONTAMINATED = "contaminated"
    OTHER = "other"


class HandoffReason(StrEnum):
    SAFETY = "safety"
    INJURY = "injury"
    DAMAGED_GOODS = "damaged_goods"
    STOCK_DISCREPANCY = "stock_discrepancy"
    EQUIPMENT_PROBLEM = "equipment_problem"
    WORKER_REQUEST = "worker_request"
    OTHER = "other"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- requests -------------------------------------------------------------------------


class MoveRequest(Strict):
    sku: Sku
    from_location: LocationCode
    to_location: LocationCode
    quantity: Quantity


class CountRequest(Strict):
    sku: Sku
    location: LocationCode
    counted_quantity: Count
    expected_version: int = Field(
        strict=True,
        ge=0,
        le=2**31,
        description="Stock version the counter saw (0 if the SKU had no stock row there); "
        "a mismatch answers 412 STALE_COUNT. " + _AS_INTEGER,
    )


class DamageRequest(Strict):
    sku: Sku
    location: LocationCode
    quantity: Quantity
    damage: DamageKind
    note: str = Field(default="", max_length=200)


class VerifyRequest(Strict):
    check_digits: CheckDigits


class PickConfirmRequest(Strict):
    quantity: Count = Field(
        description="Units actually picked; fewer than asked is a short pick. " + _AS_INTEGER
    )
    check_digits: CheckDigits


class HandoffRequest(Strict):
    reason: HandoffReason
    summary: str = Field(min_length=1, max_length=300)
    sku: Sku | None = None
    location: LocationCode | None = None


# ---- responses ------------------------------------------------------------------------


class Health(BaseModel):
    status: str


class StockEntry(BaseModel):
    location: str
    spoken_location: str
    zone: Zone
    sku: str
    quantity: int
    version: int


class ConfusableRef(BaseModel):
    sku: str
    name: str
    reason: str


class Item(BaseModel):
    sku: str
    gtin: str
    name: str
    unit: str
    zone: Zone
    total_quantity: int
    locations: list[StockEntry]
    confusable_with: list[ConfusableRef]


class ItemList(BaseModel):
    items: list[Item]


class StockList(BaseModel):
    stock: list[StockEntry]


class Location(BaseModel):
    code: str
    spoken: str
    zone: Zone
    stock: list[StockEntry]


class Verification(BaseModel):
    location: str
    match: bool
    attempts_left: int = Field(
        description="Wrong tries this device has left at this location before a lockout"
    )


class Change(BaseModel):
    """What a write did (or, for a dry run, would do) to stock, as {location: quantity}."""

    dry_run: bool
    audit_id: int | None
    sku: str | None
    before: dict[str, int]
    after: dict[str, int]
    delta: dict[str, int]


class MoveResult(Change):
    from_location: str
    to_location: str
    quantity: int


class CountResult(Change):
    location: str
    counted_quantity: int
    previous_quantity: int
    version: int = Field(description="The stock version after the count")


class DamageResult(Change):
    report_id: int | None
    location: str
    hold_location: str
    quantity: int
    damage: DamageKind


class PickTask(BaseModel):
    id: str
    sku: str
    item_name: str
    location: str
    spoken_location: str
    zone: Zone
    quantity: int
    picked_quantity: int | None
    status: str


class NextPick(BaseModel):
    task: PickTask | None
    open_tasks: int


class PickResult(Change):
    task: PickTask
    short: bool
    requested: int
    picked: int


class Handoff(BaseModel):
    dry_run: bool
    id: int | None
    reason: HandoffReason
    summary: str
    status: str
    audit_id: int | None


class AuditEntry(BaseModel):
    id: int
    at: str
    action: str
    device_id: str
    operator: str | None
    session_id: str | None
    call_id: str | None
    idempotency_key: str | None
    sku: str | None
    ref: str | None
    before: dict[str, int]
    after: dict[str, int]
    delta: dict[str, int]


class AuditList(BaseModel):
    entries: list[AuditEntry]
