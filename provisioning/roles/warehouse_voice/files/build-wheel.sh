#!/bin/sh
# Build a wheel from a source checkout on the controller; print the wheel's path.
#   build-wheel.sh PYTHON SOURCE_DIR OUTPUT_DIR [pip wheel arguments...]
# The build runs on a copy, so the checkout gets no build/ or *.egg-info, and stale files in
# an old build/ can never slip into the wheel. Timestamps are pinned, so the same source
# gives a byte-identical wheel and an unchanged source changes nothing on the devices.
set -eu
python=$1 src=$2 out=$3
shift 3
if [ ! -f "$src/pyproject.toml" ]; then
    echo "$src has no pyproject.toml: set warehouse_voice_package_src to a source checkout," \
        "a wheel or an sdist" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/out"
tar -C "$src" \
    --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache --exclude=.ruff_cache \
    --exclude=.pytest_cache --exclude=./provisioning/.build --exclude=./.state \
    -cf - . | tar -C "$work/src" -xf -
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} \
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/out" "$@" "$work/src" >&2
mkdir -p "$out"
for wheel in "$work/out"/*.whl; do
    cp "$wheel" "$out/"
    echo "$out/$(basename "$wheel")"
done
