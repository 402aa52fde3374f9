"""Install the Smart Turn v3.2 end-of-turn model (BSD-2-Clause) for ``turn.detector: smart-turn``.

The model ships inside the ``pipecat-ai`` wheel on PyPI. We do not install pipecat (its runtime
pulls in numba and much more): this script downloads the pinned wheel alone (``pip download
--no-deps``) into a git-ignored cache, checks the wheel's and the model's sha256, and copies the
model and pipecat's licence next to the code that loads them
(``agents/providers/models/``, git-ignored, packaged as package data).

Idempotent: a model already in place with the right checksum is left alone.
Run by ``make install`` and the Dockerfile: ``python scripts/fetch_smart_turn.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PIPECAT_VERSION = "1.14.0"
WHEEL = f"pipecat_ai-{PIPECAT_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "0352f504b44e78bdf524e45af4bc759601c835b9b7dc195efe5e03384b974a44"
MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
LICENCE_MEMBER = f"pipecat_ai-{PIPECAT_VERSION}.dist-info/licenses/LICENSE"

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "wheels"
DEST = ROOT / "agents" / "providers" / "models"
MODEL = DEST / "smart-turn-v3.2-cpu.onnx"
LICENCE = DEST / "LICENSE-smart-turn.txt"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(text: str) -> None:
    print(f"fetch_smart_turn: {text}", file=sys.stderr)


def main() -> int:
    if MODEL.is_file() and LICENCE.is_file() and _sha256(MODEL) == MODEL_SHA256:
        return 0
    wheel = CACHE / WHEEL
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        CACHE.mkdir(parents=True, exist_ok=True)
        _say(f"downloading pipecat-ai=={PIPECAT_VERSION} (the wheel only, for its model file)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "-d", str(CACHE), f"pipecat-ai=={PIPECAT_VERSION}"],
            check=True, stdout=sys.stderr,
        )
        if _sha256(wheel) != WHEEL_SHA256:
            _say(f"{wheel.name}: sha256 mismatch, refusing it")
            wheel.unlink()
            return 1
    DEST.mkdir(parents=True, exist_ok=True)
    partial = MODEL.with_suffix(".part")
    with zipfile.ZipFile(wheel) as zf:
        with zf.open(MEMBER) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        LICENCE.write_bytes(
            b"Smart Turn v3.2 model, from the pipecat-ai " + PIPECAT_VERSION.encode()
            + b" wheel (" + MEMBER.encode() + b").\n\n" + zf.read(LICENCE_MEMBER)
        )
    if _sha256(partial) != MODEL_SHA256:
        partial.unlink()
        _say(f"{MEMBER}: sha256 mismatch, refusing it")
        return 1
    partial.replace(MODEL)
    _say(f"installed {MODEL.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
