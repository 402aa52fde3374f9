"""A small approved-knowledge collection for tests, and a PDF written without a PDF library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.knowledge import KnowledgeBase, KnowledgeConfig

RETURNS = (
    "# Returns\n\nItems can be returned within 45 days of delivery for a full refund. "
    "Bring the receipt or the order number.\n\nOpened software cannot be returned.\n"
)
HOURS = "Opening hours\n\nThe Springfield store opens at 8 am and closes at 6 pm on weekdays.\n"
SHIPPING = "Shipping to Canada takes five business days and costs 12 dollars.\n"


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows ``text`` (Helvetica), enough for text extraction."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_collection(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "returns.md").write_text(RETURNS)
    (root / "hours.txt").write_text(HOURS)
    (root / "shipping.pdf").write_bytes(tiny_pdf(SHIPPING.strip()))
    return root


def knowledge_config(tmp: Path, **extra: Any) -> KnowledgeConfig:
    return KnowledgeConfig.model_validate({
        "collections": {"store-policy": {"path": str(write_collection(tmp / "docs"))}},
        "index_dir": str(tmp / "index"), "watch_interval_s": None, **extra,
    })


async def ready_base(config: KnowledgeConfig, embedder: Any) -> KnowledgeBase:
    base = KnowledgeBase(config=config, embedder=embedder)
    await base.prewarm()
    return base
