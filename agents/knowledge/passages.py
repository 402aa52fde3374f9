"""Reading a collection's files and splitting them into passages.

Markdown and text files are read as UTF-8 (undecodable bytes replaced); PDF text comes from
``pypdf``, one page at a time. Text is split on blank lines into paragraphs; paragraphs are
packed into passages of at most ``passage_chars`` characters, and a paragraph longer than that
is cut at sentence or word boundaries into pieces that share ``overlap_chars`` characters.
A Markdown heading starts a new passage, so a passage does not straddle two sections.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from agents.knowledge.config import FILE_SUFFIXES

log = structlog.get_logger("agents.knowledge")

PDF_SUFFIX = ".pdf"
MAX_FILE_BYTES = 50 * 1024 * 1024
_BLANK = re.compile(r"\n\s*\n")
_SPACE = re.compile(r"[ \t\r\f\v]+")


@dataclass(frozen=True, slots=True)
class Passage:
    source: str
    """The file, relative to the collection's folder (with ``#page=N`` for a PDF page)."""
    text: str


def collection_files(root: Path) -> list[Path]:
    """The files of a collection, sorted, hidden files and folders skipped."""
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in FILE_SUFFIXES:
            out.append(path)
    return out


def folder_signature(root: Path) -> str:
    """Changes when a file is added, removed, renamed or modified (name, size, mtime)."""
    h = hashlib.sha256()
    for path in collection_files(root):
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_passages(root: Path, *, passage_chars: int, overlap_chars: int) -> list[Passage]:
    """Every passage of the collection at ``root``. A file that cannot be read is logged and
    skipped (the rest of the collection still counts)."""
    passages: list[Passage] = []
    for path in collection_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            for source, text in _file_texts(path, rel):
                passages.extend(
                    Passage(source=source, text=t)
                    for t in split_text(text, max_chars=passage_chars, overlap=overlap_chars)
                )
        except Exception as e:  # noqa: BLE001 (one bad file must not lose the collection)
            log.warning("knowledge_file_skipped", file=rel, error_type=type(e).__name__,
                        error=str(e)[:200])
    return passages


def _file_texts(path: Path, rel: str) -> Iterator[tuple[str, str]]:
    if path.suffix.lower() == PDF_SUFFIX:
        from pypdf import PdfReader

        reader = PdfReader(path)
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                yield f"{rel}#page={number}", text
        return
    yield rel, path.read_text(encoding="utf-8", errors="replace")


def split_text(text: str, *, max_chars: int, overlap: int) -> list[str]:
    """Passages of at most ``max_chars`` characters, on paragraph boundaries where possible."""
    out: list[str] = []
    current = ""
    for raw in _BLANK.split(text.replace("\r\n", "\n")):
        para = " ".join(_SPACE.sub(" ", line).strip() for line in raw.splitlines()).strip()
        if not para:
            continue
        if para.startswith("#") and current:  # a heading starts a new passage
            out.append(current)
            current = ""
        if len(para) > max_chars:
            if current:
                out.append(current)
                current = ""
            out.extend(_cut(para, max_chars, overlap))
            continue
        joined = f"{current}\n{para}" if current else para
        if len(joined) > max_chars:
            out.append(current)
            current = para
        else:
            current = joined
    if current:
        out.append(current)
    return out


def _cut(text: str, max_chars: int, overlap: int) -> list[str]:
    """Cut one long paragraph at sentence ends (else spaces), pieces sharing ``overlap``."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + max_chars)
        if end < len(text):
            window = text[start:end]
            cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
            if cut < max_chars // 2:
                cut = window.rfind(" ")
            if cut > max_chars // 4:
                end = start + cut + 1
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end)  # start the next piece on a word
        start = space + 1 if space != -1 else nxt
    return [p for p in pieces if p]
