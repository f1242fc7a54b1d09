"""The eye: camera sources, JPEG snapshots for the Live session, and local barcode decoding."""

from device.vision.barcodes import CodeFormat, DecodedCode, decode_barcodes, decode_barcodes_async
from device.vision.camera import (
    CameraError,
    CameraSettings,
    CameraSource,
    DirectorySource,
    open_camera,
)
from device.vision.jpeg import encode_jpeg, encode_jpeg_async, fitted_size
from device.vision.snapshots import FrameResult, SendFrame, SnapshotStreamer, start_camera
from device.vision.tools import DECLARATIONS, LOOK, SCAN_BARCODE, VisionTools

__all__ = [
    "DECLARATIONS",
    "LOOK",
    "SCAN_BARCODE",
    "CameraError",
    "CameraSettings",
    "CameraSource",
    "CodeFormat",
    "DecodedCode",
    "DirectorySource",
    "FrameResult",
    "SendFrame",
    "SnapshotStreamer",
    "VisionTools",
    "decode_barcodes",
    "decode_barcodes_async",
    "encode_jpeg",
    "encode_jpeg_async",
    "fitted_size",
    "open_camera",
    "start_camera",
]
