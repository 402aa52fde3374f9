"""The knowledge admin API: files of the approved-knowledge collections (docs/knowledge.md).

``GET /knowledge`` lists the configured collections and their files; ``PUT
/knowledge/{collection}/files/{name}`` stores the request body as a file of the collection (the
raw bytes of a .md, .markdown, .txt or .pdf file); ``DELETE`` removes one. Files are written
atomically into the collection's configured folder; the agent's watcher re-indexes the
collection within ``knowledge.watch_interval_s``. Only configured collections exist here, and a
name is one plain file name (no folders, not hidden). Needs ``Authorization: Bearer
<admin_token>``, like the jobs API; off (404) without one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path as FsPath
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Path, Request, status

from agents.knowledge.config import FILE_SUFFIXES
from app.api.deps import AdminDep, RuntimeDep

log = structlog.get_logger("app.api.knowledge")

_DETAIL: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"detail": {"type": "string"}}}
        }
    }
}
router = APIRouter(
    prefix="/knowledge",
    tags=["knowledge"],
    responses={
        401: {"description": "Missing or wrong admin bearer token", **_DETAIL},
        404: {"description": "The API is off (no admin_token), or no such collection or file",
              **_DETAIL},
        503: {"description": "The service is starting", **_DETAIL},
    },
)
_WRITE: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than 20 MiB", **_DETAIL},
    422: {"description": "Not a plain .md, .markdown, .txt or .pdf file name, or empty",
          **_DETAIL},
    507: {"description": "The file could not be stored", **_DETAIL},
}

MAX_FILE_BYTES = 20 * 1024 * 1024
Collection = Annotated[str, Path(min_length=1, max_length=64)]
FileName = Annotated[str, Path(min_length=1, max_length=200)]


def _folder(runtime: Any, collection: str) -> FsPath:
    cfg = runtime.settings.agent.knowledge.collections.get(collection)
    if cfg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown collection")
    folder: FsPath = cfg.path
    return folder


def _file_name(name: str) -> str:
    if (name.startswith(".") or "/" in name or "\\" in name or "\0" in name
            or FsPath(name).suffix.lower() not in FILE_SUFFIXES):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"a file name without folders, not hidden, ending in one of "
            f"{', '.join(sorted(FILE_SUFFIXES))}",
        )
    return name


def _files(root: FsPath) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    return [
        {"name": p.relative_to(root).as_posix(), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in FILE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]


def _store(folder: FsPath, name: str, body: bytes) -> bool:
    """Write ``body`` as ``folder/name`` atomically; True when it replaced a file."""
    folder.mkdir(parents=True, exist_ok=True)
    existed = (folder / name).exists()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, folder / name)
    except BaseException:
        FsPath(tmp).unlink(missing_ok=True)
        raise
    return existed


def _delete(path: FsPath) -> bool:
    if not path.is_file():
        return False
    path.unlink()
    return True


@router.get("")
async def list_collections(_admin: AdminDep, runtime: RuntimeDep) -> dict[str, Any]:
    out = {}
    for name, cfg in runtime.settings.agent.knowledge.collections.items():
        files = await asyncio.to_thread(_files, cfg.path)
        out[name] = {"description": cfg.description, "files": files}
    return {"collections": out}


@router.put("/{collection}/files/{name}", responses=_WRITE)
async def put_file(
    _admin: AdminDep, runtime: RuntimeDep, request: Request, collection: Collection,
    name: FileName,
) -> dict[str, Any]:
    folder = _folder(runtime, collection)
    name = _file_name(name)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FILE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "file too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FILE_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "file too large")
    if not body:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty file")
    try:
        existed = await asyncio.to_thread(_store, folder, name, bytes(body))
    except OSError as e:
        log.warning("knowledge_upload_failed", collection=collection, file=name,
                    error=type(e).__name__)
        raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE, "could not store the file") from e
    log.info("knowledge_file_stored", collection=collection, file=name, bytes=len(body))
    return {"collection": collection, "name": name, "bytes": len(body), "replaced": existed,
            "reindex_within_s": runtime.settings.agent.knowledge.watch_interval_s}


@router.delete("/{collection}/files/{name}", responses={422: _WRITE[422]})
async def delete_file(
    _admin: AdminDep, runtime: RuntimeDep, collection: Collection, name: FileName
) -> dict[str, Any]:
    path = _folder(runtime, collection) / _file_name(name)
    if not await asyncio.to_thread(_delete, path):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown file")
    log.info("knowledge_file_deleted", collection=collection, file=name)
    return {"collection": collection, "name": name, "deleted": True}
