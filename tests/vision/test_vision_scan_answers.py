"""What `scan_barcode` says: no code, a code it can't read (and how to help), several codes
(which is which), payload control characters kept and escaped; `look` with no conversation;
`camera.enabled = false` keeps scans and stops pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zxingcpp
from PIL import Image, ImageFilter
from vision_frames import frame, label, save, scene

from device.events import EventBus
from device.vision.barcodes import CodeFormat, DecodedCode, _without_conflicts
from device.vision.camera import DirectorySource
from device.vision.snapshots import SnapshotStreamer
from device.vision.tools import VisionTools

F = zxingcpp.BarcodeFormat


def tools_for(folder: Path, *, snapshots: bool = True) -> tuple[VisionTools, list[bytes]]:
    sent: list[bytes] = []

    async def send(jpeg: bytes) -> None:
        sent.append(jpeg)

    streamer = SnapshotStreamer(DirectorySource(folder), bus=EventBus(), enabled=snapshots)
    streamer.session_opened(send)
    return VisionTools(streamer, snapshots=snapshots), sent


def dark(image: Image.Image, factor: float) -> Image.Image:
    return Image.fromarray((np.asarray(image) * factor).astype(np.uint8))


async def test_a_qr_code_keeps_its_newlines_and_tabs_escaped(tmp_path: Path) -> None:
    save(
        frame([(label("SKU-9\nLOT\t7", F.QRCode, 5), 0.0, (500, 200))], blur=1.0, seed=4), tmp_path
    )
    tools, _ = tools_for(tmp_path)
    result = await tools.scan_barcode({})
    assert result["codes"] == [{"text": "SKU-9\\nLOT\\t7", "format": "qr_code", "kind": "text"}]
    assert result["speakable"] == 'QR code: "SKU-9 LOT 7".'


async def test_a_gs1_data_matrix_keeps_its_separator_and_gives_the_printed_form(
    tmp_path: Path,
) -> None:
    code = zxingcpp.create_barcode("(01)09506000134352(10)ABC123(17)261231", F.DataMatrix, gs1=True)
    symbol = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=6)))
    still = scene(3)
    still.paste(symbol.convert("RGB"), (400, 200))
    save(still, tmp_path)
    tools, _ = tools_for(tmp_path)
    result = await tools.scan_barcode({})
    assert result["codes"] == [
        {
            "text": "0109506000134352" + "10ABC123\\x1d17261231",
            "format": "data_matrix",
            "kind": "gs1",
            "gs1": "(01)09506000134352(10)ABC123(17)261231",
        }
    ]
    assert "(01)09506000134352(10)ABC123(17)261231" in result["speakable"]


async def test_several_codes_say_which_is_which(tmp_path: Path) -> None:
    still = frame(
        [
            (label("4006381333931", F.EAN13, 4), 0.0, (820, 400)),
            (label("A-12-03", F.Code128, 4), 0.0, (40, 60)),
        ],
        blur=1.0,
        seed=3,
    )
    save(still, tmp_path)
    tools, _ = tools_for(tmp_path)
    result = await tools.scan_barcode({})
    assert [(c["text"], c["kind"], c["where"]) for c in result["codes"]] == [
        ("A-12-03", "location", "on the left at the top"),
        ("4006381333931", "gtin", "on the right at the bottom"),
    ]
    assert result["speakable"] == (
        'I read 2 codes: on the left at the top, Code 128 bin label "A-12-03"; '
        'on the right at the bottom, EAN-13 product code "4006381333931".'
    )


def misprinted() -> Image.Image:
    """A label printed wrong: two digits of another GTIN spliced in, so the check digit fails.
    zxing sees an EAN-13 and no view can read it."""

    def bars_of(gtin: str) -> np.ndarray:
        code = zxingcpp.create_barcode(gtin, F.EAN13)
        return np.asarray(zxingcpp.write_barcode_to_image(code, scale=4)).copy()

    bars, other = bars_of("4006381333931"), bars_of("5901234123457")
    quiet = (bars.shape[1] - 95 * 4) // 2
    digits = slice(quiet + 4 * 57, quiet + 4 * 71)  # the 2nd and 3rd digits of the right half
    bars[:, digits] = other[:, digits]
    symbol = Image.fromarray(bars).resize((bars.shape[1], 120)).convert("RGB")
    still = scene(6)
    still.paste(symbol, (300, 250))
    return still.filter(ImageFilter.GaussianBlur(0.8))


async def test_no_code_and_an_unreadable_code_are_different_answers(tmp_path: Path) -> None:
    save(scene(5), tmp_path / "empty")
    tools, _ = tools_for(tmp_path / "empty")
    empty = await tools.scan_barcode({})
    assert empty["status"] == "not_found"
    assert "can't see a barcode" in empty["speakable"]

    save(misprinted(), tmp_path / "scuffed")
    tools, _ = tools_for(tmp_path / "scuffed")
    seen = await tools.scan_barcode({})
    assert seen["status"] == "unreadable", seen
    assert seen["retryable"] is True and seen["codes"] == []
    assert seen["seen"][0]["format"] == "ean13"
    assert "can see a EAN-13 but can't read it" in seen["speakable"].replace("an EAN", "a EAN")


async def test_a_dark_unreadable_code_asks_for_light(tmp_path: Path) -> None:
    save(dark(misprinted(), 0.2), tmp_path)
    tools, _ = tools_for(tmp_path)
    answer = await tools.scan_barcode({})
    assert answer["status"] == "unreadable", answer
    assert "more light" in answer["advice"] and "more light" in answer["speakable"]


async def test_look_outside_a_conversation_says_so(tmp_path: Path) -> None:
    save(scene(2), tmp_path)
    tools = VisionTools(SnapshotStreamer(DirectorySource(tmp_path), bus=EventBus()))
    result = await tools.look({})
    assert result["status"] == "no_session"
    assert "no conversation" in result["speakable"]


async def test_camera_disabled_keeps_scans_and_sends_no_pictures(tmp_path: Path) -> None:
    save(frame([(label("A-14-01", F.Code128, 4), 0.0, (300, 200))], blur=1.0, seed=2), tmp_path)
    tools, sent = tools_for(tmp_path, snapshots=False)
    assert [d["name"] for d in tools.declarations()] == ["scan_barcode"]
    assert set(tools.handlers()) == {"scan_barcode"}
    result = await tools.scan_barcode({})
    assert result["codes"][0]["text"] == "A-14-01"
    assert sent == []


def test_two_reads_of_one_label_that_disagree_are_not_both_returned() -> None:
    checked = DecodedCode("4006381333931", CodeFormat.EAN13, 400, 300, trusted_by="check")
    voted = DecodedCode("0086318333931", CodeFormat.EAN13, 410, 305, trusted_by="vote")
    elsewhere = DecodedCode("5901234123457", CodeFormat.EAN13, 900, 300, trusted_by="vote")
    kept, conflicts = _without_conflicts([checked, voted, elsewhere])
    assert kept == [checked, elsewhere] and conflicts == []
    rival = DecodedCode("0086318333931", CodeFormat.EAN13, 405, 300, trusted_by="check")
    kept, conflicts = _without_conflicts([checked, rival])
    assert kept == [] and [c.reason for c in conflicts] == ["conflicting_reads"] * 2
