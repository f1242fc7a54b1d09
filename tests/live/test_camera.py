"""Camera snapshots and barcode scans through the session, the emulator and the real SDK."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zxingcpp
from PIL import Image, ImageFilter

from device.config import REPO_CONFIG_DIR, settings_from_dict
from device.events import EventBus, UserSpeech
from device.sim.scenario import parse_scenario
from device.tools.dispatcher import ToolDispatcher
from device.tools.inventory_client import InventoryClient
from device.tools.registry import ToolSet
from device.vision.eye import Eye
from device.vision.snapshots import FrameResult

CODE = "A-12-03/104417"


def label_frame(
    text: str, seed: int, fmt: zxingcpp.BarcodeFormat = zxingcpp.BarcodeFormat.Code128
) -> Image.Image:
    """A barcode label, turned and blurred, on a noisy 1280x720 aisle scene."""
    rng = np.random.default_rng(seed)
    scene = Image.fromarray(rng.normal(110, 35, (720, 1280, 3)).clip(0, 255).astype(np.uint8))
    code = zxingcpp.create_barcode(text, fmt)
    symbol = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=4)))
    card = Image.new("RGB", (symbol.width + 40, symbol.height + 40), (235, 235, 225))
    card.paste(symbol.convert("RGB"), (20, 20))
    turned = card.rotate(7, expand=True, resample=Image.Resampling.BICUBIC)
    scene.paste(turned, (300, 250), Image.new("L", card.size, 255).rotate(7, expand=True))
    return scene.filter(ImageFilter.GaussianBlur(0.8))


def scan_scenario() -> Any:
    text = """
name = "scan-label"
speed = 20.0
[[turns]]
user_transcript = "What does this label say?"
reply_text = "It says A-12-03 slash 104417."
[[turns.tool_calls]]
id = "scan-1"
name = "scan_barcode"
args = {}
"""
    return parse_scenario(text, name="scan-label", base_dir=REPO_CONFIG_DIR / "scenarios")


async def test_snapshots_only_while_talking_and_a_scan_reads_the_exact_code(
    rig_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        label_frame(CODE, seed=i).save(images / f"frame{i}.png")
    settings = settings_from_dict(
        {"camera": {"backend": "directory", "directory": str(images), "fps": 4.0}}
    )
    rig_ref: list[Any] = []
    eyes: list[Eye] = []
    tools = camera_tools(settings, eyes, rig_ref)
    # The worker talks in real time here, so the snapshot rate is measured against the audio.
    rig = await rig_factory(scan_scenario(), tools=tools, mic_speed=1.0)
    rig_ref.append(rig)
    eye = eyes[0]
    # The camera is paced by its own clock; on a loaded machine the worker's audio is not, so
    # the rate is checked on the times the streamer took each frame it sent.
    sent_at: list[float] = []
    send = eye.streamer._send

    async def timed(reason: str) -> FrameResult:
        taken = eye.streamer._last_attempt
        result = await send(reason)
        if reason == "stream" and result.status == "ok":
            sent_at.append(taken)
        return result

    monkeypatch.setattr(eye.streamer, "_send", timed)
    eye.start()
    runner = asyncio.create_task(rig.appliance.run())
    try:
        await asyncio.sleep(0.6)  # camera running, no session: nothing may be sent
        rig.appliance.press("gpio")
        rig.bus.publish(UserSpeech(active=True, source="button"))
        # The worker talks until three frames went out, however long a loaded machine takes.
        await rig.emulator.wait_for(
            lambda r: (
                bool(r.connections)
                and r.connections[0].audio_samples >= 16000 * 3
                and len(r.connections[0].video_frames) >= 3
            ),
            timeout_s=120,
            what="3 s of speech and three frames",
        )
        rig.bus.publish(UserSpeech(active=False, source="button"))
        rig.appliance.release("gpio")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await eye.close()
    check_frames_and_scan(rig, CODE)
    # Never faster than the set rate (4 a second; a slow machine only sends fewer), and every
    # frame sent reached the model while the worker talked.
    assert np.diff(sent_at).min() >= 1 / 4
    assert len(sent_at) == len(rig.emulator.record.connections[0].video_frames)


def camera_tools(settings: Any, eyes: list[Eye], rig_ref: list[Any]) -> Any:
    def tools(bus: EventBus) -> ToolSet:
        dispatcher = ToolDispatcher(
            bus=bus, client=InventoryClient("http://127.0.0.1:9/api/v1", "unused"), enabled=[]
        )
        toolset = ToolSet(dispatcher, bus=bus, timeout_s=10.0)
        eye = Eye(settings, bus=bus, conversation=lambda: rig_ref[0].appliance.conversation)
        eyes.append(eye)
        toolset.add(eye.tools.declarations(), eye.tools.handlers())
        return toolset

    return tools


def check_frames_and_scan(rig: Any, code: str) -> None:
    conn = rig.emulator.record.connections[0]
    frames = conn.video_frames
    talking_frames = [f for f in frames if f.sample <= _marker(conn, "audio_stream_end")]
    # Frames went out while the worker talked: JPEG, at most 1024 px.
    assert len(talking_frames) >= 3
    for frame in frames:
        assert frame.mime_type == "image/jpeg"
        with Image.open(io.BytesIO(frame.data)) as image:
            assert image.format == "JPEG" and max(image.size) <= 1024
    # Once the worker stopped, only the scan's own still may follow (it is not streamed).
    assert len(frames) - len(talking_frames) == 0
    # The scan decoded the exact code and the answer reached the model with the call's id.
    answer = rig.emulator.record.tool_responses[0]
    assert answer.id == "scan-1"
    assert answer.response["status"] == "ok"
    assert [c["text"] for c in answer.response["codes"]] == [code]


@pytest.mark.parametrize(
    ("fmt", "code"),
    [(zxingcpp.BarcodeFormat.EAN13, "4006381333931"), (zxingcpp.BarcodeFormat.QRCode, CODE)],
)
async def test_scan_reads_ean13_and_qr_through_the_session(
    rig_factory, tmp_path: Path, fmt: zxingcpp.BarcodeFormat, code: str
) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    images.mkdir()
    label_frame(code, seed=5, fmt=fmt).save(images / "frame.png")
    settings = settings_from_dict({"camera": {"backend": "directory", "directory": str(images)}})
    rig_ref: list[Any] = []
    eyes: list[Eye] = []
    rig = await rig_factory(scan_scenario(), tools=camera_tools(settings, eyes, rig_ref))
    rig_ref.append(rig)
    runner = asyncio.create_task(rig.appliance.run())
    try:
        rig.appliance.press("gpio")
        await rig.emulator.wait_for_turns(1, timeout_s=30)
        rig.appliance.release("gpio")
        await rig.wait_until_idle_after_session()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await eyes[0].close()
    answer = rig.emulator.record.tool_responses[0]
    assert answer.response["status"] == "ok", answer.response
    assert [c["text"] for c in answer.response["codes"]] == [code]


def _marker(conn: Any, kind: str) -> int:
    return next(m.sample for m in conn.markers if m.kind == kind)
