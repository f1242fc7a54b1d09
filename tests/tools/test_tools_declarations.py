"""The declarations the model sees, checked through google-genai itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google import genai
from google.genai import _common, types
from google.genai import _live_converters as live_converters

from device.tools.declarations import (
    CONFIRM_TOOL,
    WAREHOUSE_TOOLS,
    declarations,
    validation_schema,
)


def setup_tools(decls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `setup.tools` JSON google-genai would send on the Live websocket."""
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(**d) for d in decls])
    params = types.LiveConnectParameters(
        model="models/gemini-3.1-flash-live-preview",
        config=types.LiveConnectConfig(tools=[tool]),
    ).model_dump(exclude_none=True)
    client = genai.Client(api_key="test-key-not-used")
    request = _common.convert_to_dict(
        live_converters._LiveConnectParameters_to_mldev(
            api_client=client._api_client, from_object=params
        )
    )
    # Must survive the websocket's JSON encoding as-is.
    return list(json.loads(json.dumps(request["setup"]["tools"])))


def test_all_tools_reach_the_live_setup_with_their_constraints() -> None:
    [tools] = setup_tools(declarations(WAREHOUSE_TOOLS))
    by_name = {d["name"]: d for d in tools["functionDeclarations"]}
    assert set(by_name) == {*WAREHOUSE_TOOLS, CONFIRM_TOOL}

    move = by_name["move_stock"]["parameters"]
    assert move["type"] == "OBJECT"
    assert move["required"] == ["sku", "from_location", "to_location", "quantity"]
    assert move["properties"]["quantity"] == {
        "type": "INTEGER",
        "minimum": 1.0,
        "maximum": 9999.0,
        "description": "Units, 1 to 9999.",
    }
    assert move["properties"]["from_location"]["pattern"] == r"^[A-Z0-9]{1,4}(-[A-Z0-9]{1,4}){1,4}$"
    verify = by_name["verify_location"]["parameters"]["properties"]
    assert verify["spoken_digits"]["pattern"] == r"^[0-9]{2,3}$"
    damage = by_name["report_damage"]["parameters"]["properties"]["damage"]
    assert "crushed" in damage["enum"]
    assert "parameters" not in by_name["get_next_pick"]
    assert by_name["find_item"]["parameters"]["min_properties"] == 1


def test_only_enabled_tools_are_declared() -> None:
    reads = [d["name"] for d in declarations(["find_item", "get_stock"])]
    assert reads == ["find_item", "get_stock"]
    with_write = [d["name"] for d in declarations(["record_count", "find_item"])]
    assert with_write == ["find_item", "record_count", CONFIRM_TOOL]


def test_an_unknown_tool_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"'end_shift'.*choose from find_item"):
        declarations(["find_item", "end_shift"])


def test_the_model_sees_no_secrets_and_no_commit_flag() -> None:
    text = json.dumps(declarations(WAREHOUSE_TOOLS)).lower()
    assert "idempotency" not in text
    assert "check_digits" not in text
    for name in WAREHOUSE_TOOLS:
        schema = validation_schema(name)
        assert schema["additionalProperties"] is False
        assert "confirmed" not in schema["properties"]
