"""What each warehouse tool does against the inventory API, and the sentences it says.

Reads return a finished result. Writes return a `Proposal`: the dry run's facts and the
read-back sentence; the dispatcher holds it until the worker confirms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from device.tools import results
from device.tools.consent import Change
from device.tools.inventory_client import (
    CallContext,
    InventoryClient,
    InventoryError,
    WriteRequest,
    count_request,
    damage_request,
    handoff_request,
    move_request,
    pick_request,
)
from device.tools.speech import number_words as words

VERIFY_TTL_S = 600.0
MAX_CHECK_DIGIT_TRIES = 3
LOCKOUT_S = 120.0


@dataclass(frozen=True)
class Proposal:
    write: WriteRequest
    readback: str  # without the "say confirm" prompt
    data: dict[str, Any]
    change: Change


Outcome = dict[str, Any] | Proposal


@dataclass
class PickMemory:
    """Bins the worker proved they stand at, by speaking the label's check digits.

    Kept per device, not per Live session: a worker who verified a bin and then opens a new
    conversation to confirm the pick is still standing there.
    """

    verified: dict[str, tuple[str, float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)

    def digits_for(self, location: str) -> str | None:
        hit = self.verified.get(location)
        if hit is None or time.monotonic() - hit[1] > VERIFY_TTL_S:
            return None
        return hit[0]


def _item_sentence(item: dict[str, Any]) -> str:
    head = f"SKU {item['sku']}, {results.quote(item['name'])}"
    locations = item.get("locations") or []
    if not locations:
        text = f"{head}, is out of stock: no bin holds any."
    elif len(locations) == 1:
        loc = locations[0]
        text = (
            f"{head}: {loc['location']}, {loc['spoken_location']}, {words(loc['quantity'])} units."
        )
    else:
        parts = [f"{loc['location']} has {words(loc['quantity'])}" for loc in locations[:4]]
        text = f"{head}: " + "; ".join(parts) + "."
    look_alikes = item.get("confusable_with") or []
    if look_alikes:
        other = look_alikes[0]
        text += f" Careful: SKU {other['sku']}, {results.quote(other['name'])}, is similar."
    return text


def _item_data(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "sku": item["sku"],
        "name": str(item["name"])[: results.MAX_QUOTED],
        "total_quantity": item["total_quantity"],
        "locations": [
            {k: loc[k] for k in ("location", "spoken_location", "quantity")}
            for loc in item.get("locations", [])
        ],
        "similar_skus": [c["sku"] for c in item.get("confusable_with", [])],
    }


class WarehouseTools:
    def __init__(self, client: InventoryClient, picks: PickMemory | None = None) -> None:
        self.client = client
        self.picks = picks or PickMemory()

    async def find_item(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        if "sku" in args:
            item = await self.client.get_item(args["sku"])
            return results.ok(_item_sentence(item), _item_data(item), detail=results.OUTSIDE_TEXT)
        found = await self.client.find_items(gtin=args.get("gtin"), name=args.get("name"))
        if not found:
            what = f"barcode {args['gtin']}" if "gtin" in args else results.quote(args.get("name"))
            return results.error("ITEM_NOT_FOUND", f"I can't find an item matching {what}.")
        if len(found) == 1:
            return results.ok(
                _item_sentence(found[0]), _item_data(found[0]), detail=results.OUTSIDE_TEXT
            )
        listed = "; ".join(f"SKU {i['sku']}, {results.quote(i['name'])}" for i in found)
        return results.ok(
            f"I found {words(len(found))} items: {listed}. Which one?",
            {"matches": [_item_data(i) for i in found]},
            valid_options=[i["sku"] for i in found],
            detail=results.OUTSIDE_TEXT,
        )

    async def get_stock(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        location = await self.client.get_location(args["location"])
        stock = [s for s in location["stock"] if args.get("sku") in (None, s["sku"])]
        code = location["code"]
        if not stock:
            what = f"no SKU {args['sku']}" if "sku" in args else "nothing"
            speak = f"{code} has {what}." if "sku" in args else f"{code} is empty."
            return results.ok(speak, {"location": code, "stock": []})
        parts = [f"{words(s['quantity'])} of SKU {s['sku']}" for s in stock[:4]]
        return results.ok(
            f"{code} holds " + " and ".join(parts) + ".",
            {
                "location": code,
                "stock": [{"sku": s["sku"], "quantity": s["quantity"]} for s in stock],
            },
        )

    async def get_next_pick(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        body = await self.client.next_pick()
        task = body.get("task")
        if not task:
            return results.ok("There are no open picks right now.", {"open_tasks": 0})
        name = results.quote(task["item_name"])
        speak = (
            f"Next pick, {task['id']}: go to {task['location']}, {task['spoken_location']}. "
            f"Pick {words(task['quantity'])} of SKU {task['sku']}, {name}. "
            "At the bin, read me the check digits on the label."
        )
        data = {k: task[k] for k in ("id", "location", "spoken_location", "sku", "item_name",
                                     "quantity")}  # fmt: skip
        data["item_name"] = str(data["item_name"])[: results.MAX_QUOTED]
        return results.ok(
            speak,
            {"task": data, "open_tasks": body.get("open_tasks", 0)},
            detail=results.OUTSIDE_TEXT,
        )

    async def verify_location(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        location = args["location"]
        now = time.monotonic()
        if (until := self.picks.locked_until.get(location, 0.0)) > now:
            return results.too_many_tries(location, until - now)
        try:
            verdict = await self.client.verify(location, args["spoken_digits"])
        except InventoryError as err:
            return self._locked_out(location, err)
        if verdict["match"]:
            self.picks.verified[location] = (args["spoken_digits"], now)
            self.picks.failures.pop(location, None)
            return results.ok(f"Correct, you are at {location}.", {"location": location})
        tries = self.picks.failures.get(location, 0) + 1
        self.picks.failures[location] = tries
        # The server counts too, across restarts of this device: its word on the last try wins.
        if tries >= MAX_CHECK_DIGIT_TRIES or verdict.get("attempts_left") == 0:
            self.picks.failures.pop(location, None)
            return self._lock(location, LOCKOUT_S)
        return results.error(
            "CHECK_DIGIT_MISMATCH",
            f"Those check digits don't match {location}. Read them again from the label.",
            retryable=True,
        )

    def _lock(self, location: str, wait_s: float) -> dict[str, Any]:
        self.picks.locked_until[location] = time.monotonic() + wait_s
        self.picks.verified.pop(location, None)
        return results.too_many_tries(location, wait_s)

    def _locked_out(self, location: str, err: InventoryError) -> dict[str, Any]:
        """The API's lockout becomes the device's, so the model stops asking until it ends."""
        if err.code != "CHECK_DIGIT_LOCKED":
            raise err
        wait = err.extra.get("retry_after_s")
        return self._lock(location, float(wait) if isinstance(wait, int | float) else LOCKOUT_S)

    async def confirm_pick(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        task = await self.client.get_pick(args["task_id"])
        if task["status"] != "open":
            raise InventoryError("PICK_NOT_OPEN", f"pick {task['id']} is {task['status']}")
        digits = self.picks.digits_for(task["location"])
        if digits is None:
            return results.error(
                "LOCATION_NOT_VERIFIED",
                f"First read me the check digits at {task['location']}, {task['spoken_location']}.",
                valid_options=["verify_location"],
                detail="call verify_location with the digits the worker reads at the bin",
            )
        qty = args["quantity"]
        try:
            preview = await self.client.preview(pick_request(task["id"], qty, digits), ctx)
        except InventoryError as err:
            return self._locked_out(task["location"], err)
        if qty < task["quantity"]:
            readback = (
                f"Asked for {words(task['quantity'])}, you said {words(qty)}. "
                f"That's a short pick of {words(qty)} from {task['location']}."
            )
        else:
            readback = f"Picked {words(qty)} of SKU {task['sku']} from {task['location']}."
        change = Change("confirm_pick", qty, task["sku"], task["location"], task_id=task["id"])
        return Proposal(pick_request(task["id"], qty, digits), readback, _change(preview), change)

    async def move_stock(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        write = move_request(
            args["sku"], args["from_location"], args["to_location"], args["quantity"]
        )
        preview = await self.client.preview(write, ctx)
        readback = (
            f"Move {words(args['quantity'])} of SKU {args['sku']} from {args['from_location']} "
            f"to {args['to_location']}."
        )
        change = Change(
            "move_stock", args["quantity"], args["sku"], args["from_location"], args["to_location"]
        )
        return Proposal(write, readback, _change(preview), change)

    async def record_count(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        rows = await self.client.get_stock(sku=args["sku"], location=args["location"])
        version = rows[0]["version"] if rows else 0
        write = count_request(args["sku"], args["location"], args["counted_quantity"], version)
        preview = await self.client.preview(write, ctx)
        counted, before = args["counted_quantity"], preview["previous_quantity"]
        readback = f"Count of SKU {args['sku']} at {args['location']}: {words(counted)}."
        if counted == before:
            readback += " That matches the system."
        else:
            more = "more" if counted > before else "fewer"
            diff = words(abs(counted - before))
            readback += f" The system shows {words(before)}, so {diff} {more}."
        change = Change("record_count", counted, args["sku"], args["location"])
        return Proposal(write, readback, _change(preview), change)

    async def report_damage(self, args: dict[str, Any], ctx: CallContext) -> Outcome:
        write = damage_request(
            args["sku"], args["location"], args["quantity"], args["damage"], args.get("note", "")
        )
        preview = await self.client.preview(write, ctx)
        damage = args["damage"].replace("_", " ")
        readback = (
            f"Report {words(args['quantity'])} of SKU {args['sku']} at {args['location']} "
            f"as {damage}"
        )
        hold = preview.get("hold_location")
        readback += f", and move them to QA hold at {hold}." if hold != args["location"] else "."
        change = Change("report_damage", args["quantity"], args["sku"], args["location"])
        return Proposal(write, readback, _change(preview), change)

    async def handoff_to_human(
        self, args: dict[str, Any], ctx: CallContext, idempotency_key: str
    ) -> dict[str, Any]:
        write = handoff_request(args["reason"], args["summary"])
        body = await self.client.commit(write, idempotency_key=idempotency_key, context=ctx)
        urgent = args["reason"] in ("safety", "injury")
        speak = (
            "I've called a supervisor. Please stay where you are."
            if urgent
            else "I've asked a supervisor to come to you."
        )
        return results.ok(speak, {"handoff_id": body.get("id")})


def _change(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("sku", "before", "after", "delta", "hold_location", "short", "requested", "picked")
    return {k: body[k] for k in keys if k in body}


def committed_sentence(tool: str, args: dict[str, Any], body: dict[str, Any]) -> str:
    if tool == "move_stock":
        return (
            f"Done. Moved {words(args['quantity'])} of SKU {args['sku']} to {args['to_location']}."
        )
    if tool == "record_count":
        counted = words(args["counted_quantity"])
        return f"Saved. Count of {counted} for SKU {args['sku']} at {args['location']}."
    if tool == "report_damage":
        return f"Saved. Damage report for {words(args['quantity'])} of SKU {args['sku']}."
    if tool == "confirm_pick":
        if body.get("short"):
            return f"Short pick of {words(args['quantity'])} recorded."
        return f"Pick confirmed: {words(args['quantity'])} of SKU {body.get('sku', '')}."
    return "Done."


def committed_data(body: dict[str, Any]) -> dict[str, Any]:
    data = _change(body)
    if "audit_id" in body:
        data["audit_id"] = body["audit_id"]
    return data
