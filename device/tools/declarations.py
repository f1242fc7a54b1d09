"""The warehouse tools as the model sees them: names, descriptions and tight schemas.

Each schema is kept here once, as JSON Schema. The dispatcher validates calls against it
(with `additionalProperties: false`), and `declaration()` turns it into the dict that
google-genai's `types.FunctionDeclaration(**d)` accepts under `parameters`. That field, not
`parameters_json_schema`, is what the Live API takes today; it has no `additionalProperties`,
so that key stays on our side only. Nothing here mentions a check digit's value or an
idempotency key: the model never sees either.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

SKU = {
    "type": "string",
    "pattern": r"^[0-9]{6}$",
    "description": "Six-digit SKU, digits only, as the worker said it, e.g. 104417.",
}
LOCATION = {
    "type": "string",
    "pattern": r"^[A-Z0-9]{1,4}(-[A-Z0-9]{1,4}){1,4}$",
    "description": "Bin code in capitals with dashes, e.g. A-12-03 (aisle A, bay 12, level 3).",
}
QUANTITY = {"type": "integer", "minimum": 1, "maximum": 9999, "description": "Units, 1 to 9999."}

READ_TOOLS = ("find_item", "get_stock", "get_next_pick", "verify_location")
WRITE_TOOLS = ("move_stock", "record_count", "report_damage", "confirm_pick")
# A call for help must never wait on a read-back; it is still sent with an idempotency key.
DIRECT_WRITE_TOOLS = ("handoff_to_human",)
WAREHOUSE_TOOLS = READ_TOOLS + WRITE_TOOLS + DIRECT_WRITE_TOOLS
CONFIRM_TOOL = "confirm_pending_action"

_CONFIRM_NOTE = (
    " This never changes stock by itself: it returns status needs_confirmation and a "
    "`speakable` read-back. Say that read-back to the worker word for word, then wait. When the "
    f"worker answers, call {CONFIRM_TOOL}."
)

_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "find_item": (
        "Find an item and where it is stored. Use when the worker asks where something is or "
        "what a SKU or barcode is. Give exactly what the worker said: a SKU, a 13-digit barcode, "
        "or a few words of the item's name. The result lists bins and units; read the "
        "`speakable` text. If it warns about a look-alike SKU, mention it.",
        {"properties": {
            "sku": SKU,
            "gtin": {"type": "string", "pattern": r"^[0-9]{13}$",
                     "description": "13-digit barcode number (GTIN-13 / EAN-13)."},
            "name": {"type": "string", "minLength": 2, "maxLength": 80,
                     "description": "Words from the item's name, e.g. 'blue nitrile gloves'."},
        }, "minProperties": 1},
    ),
    "get_stock": (
        "How many units are in a bin, optionally of one SKU. Use for 'what's in A-12-03' or "
        "'how many 104417 in A-12-03'.",
        {"properties": {"location": LOCATION, "sku": SKU}, "required": ["location"]},
    ),
    "move_stock": (
        "Move units of one SKU from one bin to another." + _CONFIRM_NOTE,
        {"properties": {"sku": SKU, "from_location": LOCATION, "to_location": LOCATION,
                        "quantity": QUANTITY},
         "required": ["sku", "from_location", "to_location", "quantity"]},
    ),
    "record_count": (
        "Record a cycle count: the number of units of a SKU the worker counted in a bin, 0 if "
        "the bin is empty." + _CONFIRM_NOTE,
        {"properties": {"sku": SKU, "location": LOCATION,
                        "counted_quantity": {"type": "integer", "minimum": 0, "maximum": 9999,
                                             "description": "Units counted, 0 to 9999."}},
         "required": ["sku", "location", "counted_quantity"]},
    ),
    "report_damage": (
        "Report damaged units of a SKU in a bin; they are moved to QA hold." + _CONFIRM_NOTE,
        {"properties": {
            "sku": SKU, "location": LOCATION, "quantity": QUANTITY,
            "damage": {"type": "string", "enum": ["crushed", "wet", "torn_packaging", "broken",
                                                  "expired", "contaminated", "other"],
                       "description": "What is wrong with the units."},
            "note": {"type": "string", "maxLength": 120,
                     "description": "Optional short note in the worker's words."},
        }, "required": ["sku", "location", "quantity", "damage"]},
    ),
    "get_next_pick": (
        "Get the worker's next pick task: where to go, what and how many to pick. Say the "
        "`speakable` text. At the bin the worker reads the check digits from the label; then call "
        "verify_location with them.",
        {"properties": {}},
    ),
    "verify_location": (
        "Check the digits the worker read from a bin label, to prove they are at the right bin. "
        "Pass only digits the worker actually spoke; never guess or repeat earlier ones.",
        {"properties": {
            "location": LOCATION,
            "spoken_digits": {"type": "string", "pattern": r"^[0-9]{2,3}$",
                              "description": "The 2 or 3 digits the worker spoke, e.g. '482'."},
        }, "required": ["location", "spoken_digits"]},
    ),
    "confirm_pick": (
        "Record how many units the worker picked for the current pick task, after "
        "verify_location succeeded at its bin. If they picked fewer than asked, pass what they "
        "picked (0 if the bin was empty): that is a short pick." + _CONFIRM_NOTE,
        {"properties": {
            "task_id": {"type": "string", "pattern": r"^P[0-9]{4,8}$",
                        "description": "The pick task id from get_next_pick, e.g. P0001."},
            "quantity": {"type": "integer", "minimum": 0, "maximum": 9999,
                         "description": "Units the worker says they picked."},
        }, "required": ["task_id", "quantity"]},
    ),
    "handoff_to_human": (
        "Call a supervisor to the worker. Use at once for safety problems or injuries, when the "
        "worker asks for a person, or when you cannot resolve a problem. Takes effect "
        "immediately; no confirmation needed.",
        {"properties": {
            "reason": {"type": "string", "enum": ["safety", "injury", "damaged_goods",
                                                  "stock_discrepancy", "equipment_problem",
                                                  "worker_request", "other"]},
            "summary": {"type": "string", "minLength": 1, "maxLength": 300,
                        "description": "One or two sentences for the supervisor."},
        }, "required": ["reason", "summary"]},
    ),
    CONFIRM_TOOL: (
        "Answer the read-back of the last stock change. Use decision 'confirm' only right after "
        "the worker said 'confirm' or pressed the button; the device checks this itself and "
        "refuses otherwise. Use 'cancel' if the worker says no, cancel, or corrects anything, "
        "then start again with the corrected numbers.",
        {"properties": {"decision": {"type": "string", "enum": ["confirm", "cancel"]}},
         "required": ["decision"]},
    ),
}  # fmt: skip


def check_enabled(enabled: Sequence[str]) -> tuple[str, ...]:
    """The enabled warehouse tools in declaration order; an unknown name is an error."""
    unknown = [name for name in enabled if name not in WAREHOUSE_TOOLS]
    if unknown:
        raise ValueError(
            f"unknown tool(s) in tools.enabled: {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(WAREHOUSE_TOOLS)}"
        )
    chosen = set(enabled)
    return tuple(name for name in WAREHOUSE_TOOLS if name in chosen)


def exposed_tools(enabled: Sequence[str]) -> tuple[str, ...]:
    """What the model may call: the enabled tools, plus the confirm tool if any write is on."""
    tools = check_enabled(enabled)
    if any(name in WRITE_TOOLS for name in tools):
        tools += (CONFIRM_TOOL,)
    return tools


def validation_schema(name: str) -> dict[str, Any]:
    """The full JSON Schema the dispatcher validates a call's arguments against."""
    _, params = _TOOLS[name]
    schema = {"type": "object", "additionalProperties": False, **copy.deepcopy(params)}
    schema["properties"] = {k: dict(v) for k, v in schema["properties"].items()}
    return schema


def description(name: str) -> str:
    return _TOOLS[name][0]


def declaration(name: str) -> dict[str, Any]:
    """One function declaration, as accepted by `types.FunctionDeclaration(**d)`."""
    text, params = _TOOLS[name]
    decl: dict[str, Any] = {"name": name, "description": text}
    if params["properties"]:
        parameters = {"type": "object", **copy.deepcopy(params)}
        parameters["property_ordering"] = list(params["properties"])
        decl["parameters"] = parameters
    return decl


def declarations(enabled: Sequence[str]) -> list[dict[str, Any]]:
    return [declaration(name) for name in exposed_tools(enabled)]
