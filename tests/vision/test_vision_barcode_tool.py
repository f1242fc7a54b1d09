"""`scan_barcode` and `look` as the tool dispatcher calls them, on synthetic camera frames."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from google.genai import types
from PIL import Image
from vision_frames import frame, label, save, scene

from device.events import EventBus
from device.vision.barcodes import CodeFormat
from device.vision.camera import DirectorySource
from device.vision.snapshots import SnapshotStreamer
from device.vision.tools import DECLARATIONS, VisionTools

F = zxingcpp.BarcodeFormat

# (value, zxing format, our format, module size in px, rotation, blur sigma)
LABELS = [
    ("A-12-03-B", F.Code128, CodeFormat.CODE128, 4, 8.0, 1.2),
    ("4006381333931", F.EAN13, CodeFormat.EAN13, 4, -12.0, 1.2),
    ("SKU-104417 LOT 7", F.QRCode, CodeFormat.QR_CODE, 5, 30.0, 1.5),
    ("LOC-A-14-01", F.DataMatrix, CodeFormat.DATA_MATRIX, 7, 20.0, 1.5),
]


def tools_for(folder: Path) -> tuple[VisionTools, list[bytes]]:
    sent: list[bytes] = []

    async def send(jpeg: bytes) -> None:
        sent.append(jpeg)

    streamer = SnapshotStreamer(DirectorySource(folder), bus=EventBus())
    streamer.session_opened(send)
    return VisionTools(streamer), sent


@pytest.mark.parametrize(("text", "zx", "fmt", "scale", "angle", "blur"), LABELS)
async def test_each_label_decodes_to_its_exact_value(
    tmp_path: Path,
    text: str,
    zx: zxingcpp.BarcodeFormat,
    fmt: CodeFormat,
    scale: int,
    angle: float,
    blur: float,
) -> None:
    still = frame([(label(text, zx, scale), angle, (420, 180))], blur=blur, seed=7)
    assert still.size == (1280, 720)
    save(still, tmp_path / "cam")
    tools, sent = tools_for(tmp_path / "cam")
    result = await tools.scan_barcode({})
    assert result["status"] == "ok", result
    assert [(c["text"], c["format"]) for c in result["codes"]] == [(text, fmt.value)]
    assert text in result["speakable"]
    assert result["retryable"] is False and result["valid_options"] == []
    assert sent == []  # the still is decoded on the device, not sent to the model


async def test_a_blurred_ean_is_never_read_with_wrong_digits(tmp_path: Path) -> None:
    # This frame once came back as 0086318333931: valid check digit, wrong product.
    still = frame([(label("4006381333931", F.EAN13, 4), -12.0, (420, 180))], blur=1.5, seed=0)
    save(still, tmp_path / "cam")
    tools, _ = tools_for(tmp_path / "cam")
    result = await tools.scan_barcode({"formats": ["ean13"]})
    assert result["status"] in ("ok", "not_found"), result
    assert all(c["text"] == "4006381333931" for c in result["codes"])


async def test_several_labels_are_listed_left_to_right(tmp_path: Path) -> None:
    still = frame(
        [
            (label("4006381333931", F.EAN13, 4), 0.0, (700, 300)),
            (label("A-12-03", F.Code128, 4), 0.0, (40, 60)),
        ],
        blur=1.0,
        seed=3,
    )
    save(still, tmp_path / "cam")
    tools, _ = tools_for(tmp_path / "cam")
    result = await tools.scan_barcode({})
    assert [c["text"] for c in result["codes"]] == ["A-12-03", "4006381333931"]
    assert result["speakable"] == (
        'I read 2 codes: on the left at the top, Code 128 bin label "A-12-03"; '
        'on the right, EAN-13 product code "4006381333931".'
    )


async def test_formats_limit_what_counts(tmp_path: Path) -> None:
    still = frame([(label("SKU-9", F.QRCode, 5), 0.0, (500, 200))], blur=1.0, seed=4)
    save(still, tmp_path / "cam")
    tools, _ = tools_for(tmp_path / "cam")
    assert (await tools.scan_barcode({"formats": ["ean13", "code128"]}))["status"] == "not_found"
    only_qr = await tools.scan_barcode({"formats": ["qr_code"]})
    assert [(c["text"], c["format"]) for c in only_qr["codes"]] == [("SKU-9", "qr_code")]


async def test_no_label_in_view_asks_to_try_again(tmp_path: Path) -> None:
    save(scene(5), tmp_path / "cam")
    tools, _ = tools_for(tmp_path / "cam")
    result = await tools.scan_barcode({})
    assert result["status"] == "not_found"
    assert result["retryable"] is True
    assert result["codes"] == []
    assert "Hold the label" in result["speakable"]


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        ({"formats": ["upc_a"]}, r"unknown format\(s\) \['upc_a'\]"),
        ({"formats": []}, r"formats must be a non-empty list"),
        ({"format": "qr_code"}, r"unknown argument\(s\) \['format'\]"),
    ],
)
async def test_bad_arguments_come_back_as_a_result_with_the_options(
    tmp_path: Path, args: dict[str, Any], detail: str
) -> None:
    save(scene(1), tmp_path / "cam")
    tools, _ = tools_for(tmp_path / "cam")
    result = await tools.scan_barcode(args)
    assert result["status"] == "invalid_argument"
    assert result["valid_options"] == ["qr_code", "code128", "ean13", "data_matrix"]
    assert re.search(detail, result["detail"]), result["detail"]


async def test_without_a_camera_the_tools_answer_instead_of_raising() -> None:
    bus = EventBus()
    tools = VisionTools(SnapshotStreamer(None, bus=bus))
    scan = await tools.scan_barcode({})
    assert scan["status"] == "unavailable"
    assert "read the code out to me" in scan["speakable"]
    look = await tools.look({})
    assert look["status"] == "unavailable"


async def test_a_broken_image_file_is_reported_not_raised(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    folder.mkdir()
    (folder / "frame.jpg").write_bytes(b"not a jpeg at all")
    tools, _ = tools_for(folder)
    result = await tools.scan_barcode({})
    assert result["status"] == "unavailable"
    assert "frame.jpg" in result["detail"]


async def test_look_sends_one_fresh_jpeg_to_the_session(tmp_path: Path) -> None:
    save(scene(2), tmp_path / "cam")
    tools, sent = tools_for(tmp_path / "cam")
    result = await tools.look({})
    assert result["status"] == "ok"
    assert "1024x576" in result["detail"]
    assert len(sent) == 1
    with Image.open(io.BytesIO(sent[0])) as picture:
        assert picture.format == "JPEG" and picture.size == (1024, 576)
    bad = await tools.look({"zoom": 2})
    assert bad["status"] == "invalid_argument" and len(sent) == 1


def test_declarations_are_valid_gemini_function_declarations() -> None:
    names = []
    for declaration in DECLARATIONS:
        parsed = types.FunctionDeclaration.model_validate(declaration)
        names.append(parsed.name)
        assert parsed.description
    assert names == ["scan_barcode", "look"]
    scan = types.FunctionDeclaration.model_validate(DECLARATIONS[0])
    assert scan.parameters is not None and scan.parameters.properties is not None
    items = scan.parameters.properties["formats"].items
    assert items is not None and items.enum == [f.value for f in CodeFormat]
