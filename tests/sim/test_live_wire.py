"""Wire-format helpers: key spellings, base64 alphabets, durations, transcript pieces."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.sim import wire


def test_both_spellings_normalize_to_the_same_frame() -> None:
    camel = {
        "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 300}},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "move_stock",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"fromLocation": {"type": "STRING", "maxLength": 9}},
                        },
                    }
                ]
            }
        ],
    }
    snake = {
        "realtime_input_config": {"automatic_activity_detection": {"silence_duration_ms": 300}},
        "tools": [
            {
                "function_declarations": [
                    {
                        "name": "move_stock",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"fromLocation": {"type": "STRING", "max_length": 9}},
                        },
                    }
                ]
            }
        ],
    }
    assert wire.normalize_keys(camel) == wire.normalize_keys(snake)
    # Property names are the tool author's words and survive untouched.
    declaration = wire.normalize_keys(camel)["tools"][0]["function_declarations"][0]
    assert list(declaration["parameters"]["properties"]) == ["fromLocation"]


def test_tool_arguments_and_responses_keep_their_keys() -> None:
    frame = {"functionResponses": [{"id": "c", "response": {"qtyOnHand": 4, "binId": "B"}}]}
    assert wire.normalize_keys(frame) == {
        "function_responses": [{"id": "c", "response": {"qtyOnHand": 4, "binId": "B"}}]
    }


@given(st.binary(max_size=300))
def test_decodes_standard_and_url_safe_base64_with_or_without_padding(data: bytes) -> None:
    for encoded in (
        base64.standard_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
    ):
        assert wire.decode_base64(encoded, field="x") == data


@pytest.mark.parametrize("bad", ["a", "@@@@", 12])
def test_bad_base64_names_the_field(bad: object) -> None:
    with pytest.raises(wire.WireError, match=r"realtimeInput\.audio\.data"):
        wire.decode_base64(bad, field="realtimeInput.audio.data")


@pytest.mark.parametrize(
    ("mime", "rate"),
    [("audio/pcm;rate=16000", 16000), ("audio/pcm; rate=24000", 24000), ("audio/pcm", 16000)],
)
def test_rate_from_mime_type(mime: str, rate: int) -> None:
    assert wire.pcm_rate(mime) == rate


def test_absurd_rate_is_refused() -> None:
    with pytest.raises(wire.WireError, match=r"8000\.\.48000"):
        wire.pcm_rate("audio/pcm;rate=100")


@pytest.mark.parametrize(("seconds", "text"), [(50, "50s"), (0.5, "0.5s"), (1.25, "1.25s")])
def test_durations_as_the_service_writes_them(seconds: float, text: str) -> None:
    assert wire.duration(seconds) == text


@given(st.text(alphabet=st.sampled_from("ab ,.7\t"), max_size=60), st.integers(1, 4))
def test_transcript_pieces_add_up_to_the_text(text: str, per_piece: int) -> None:
    pieces = wire.transcript_pieces(text, per_piece)
    assert "".join(pieces) == text.strip()
    assert all(piece.strip() for piece in pieces)


def test_close_reason_fits_a_close_frame() -> None:
    reason = wire.close_reason("é" * 200)
    assert len(reason.encode()) <= 123
    assert wire.close_reason("short") == "short"
