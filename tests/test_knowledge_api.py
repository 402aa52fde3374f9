"""The knowledge admin API: files uploaded to a configured collection land in its folder, the
agent's knowledge base re-indexes them, and nothing outside the configured collections (or
outside one plain file name) can be written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import ADMIN, make_settings
from knowledge_kit import ready_base

from agents.knowledge import KnowledgeConfig

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def written(tmp: Path) -> list[Path]:
    """Every .md file under the test's folder or next to it."""
    return sorted(tmp.rglob("*.md")) + sorted(tmp.parent.glob("escape.md"))


def settings(tmp: Path, **extra: Any) -> Any:
    return make_settings(agent={"knowledge": {
        "collections": {"returns-policy": {"path": str(tmp / "returns")}},
        "index_dir": str(tmp / "index"), "watch_interval_s": None}}, **extra)


async def test_the_api_is_off_without_an_admin_token_and_needs_the_bearer(
    make_app: Any, body: Any, tmp_path: Path
) -> None:
    off = await make_app(settings(tmp_path, admin_token=None), body)
    assert (await off.client.get("/knowledge", headers=AUTH)).status_code == 404
    h = await make_app(settings(tmp_path), body)
    r = await h.client.put("/knowledge/returns-policy/files/a.md", content=b"x")
    assert r.status_code == 401
    assert not (tmp_path / "returns").exists()


async def test_an_uploaded_file_is_stored_listed_indexed_and_deleted(
    make_app: Any, body: Any, tmp_path: Path, knowledge_embedder: Any
) -> None:
    s = settings(tmp_path)
    h = await make_app(s, body)
    text = b"# Returns\n\nShoes can be returned within 60 days if unworn.\n"
    r = await h.client.put("/knowledge/returns-policy/files/shoes.md", content=text,
                           headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"collection": "returns-policy", "name": "shoes.md", "bytes": len(text),
                        "replaced": False, "reindex_within_s": None}
    assert (tmp_path / "returns" / "shoes.md").read_bytes() == text
    listing = (await h.client.get("/knowledge", headers=AUTH)).json()
    assert listing["collections"]["returns-policy"]["files"] == [
        {"name": "shoes.md", "bytes": len(text)}]
    config: KnowledgeConfig = s.agent.knowledge
    base = await ready_base(config, knowledge_embedder)
    try:
        hit = base.retrieve_sync("Can I return shoes?", ["returns-policy"]).hits[0]
        assert "60 days" in hit.text and hit.source == "shoes.md"
        again = await h.client.put("/knowledge/returns-policy/files/shoes.md",
                                   content=b"Shoes cannot be returned.", headers=AUTH)
        assert again.json()["replaced"] is True
        assert await base.check_changes() == ["returns-policy"]
        hit = base.retrieve_sync("Can I return shoes?", ["returns-policy"]).hits[0]
        assert hit.text == "Shoes cannot be returned."
        gone = await h.client.delete("/knowledge/returns-policy/files/shoes.md", headers=AUTH)
        assert gone.status_code == 200 and not (tmp_path / "returns" / "shoes.md").exists()
        assert await base.check_changes() == ["returns-policy"]
        assert base.retrieve_sync("Can I return shoes?", ["returns-policy"]).hits == []
    finally:
        await base.aclose()


async def test_only_configured_collections_and_plain_file_names_are_written(
    make_app: Any, body: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    h = await make_app(settings(tmp_path), body)
    put = h.client.put
    assert (await put("/knowledge/hr-internal/files/a.md", content=b"x",
                      headers=AUTH)).status_code == 404
    for name in (".hidden.md", "tool.exe", "notes"):
        r = await put(f"/knowledge/returns-policy/files/{name}", content=b"x", headers=AUTH)
        assert r.status_code == 422, name
    r = await put("/knowledge/returns-policy/files/..%2F..%2Fescape.md", content=b"x",
                  headers=AUTH)
    assert r.status_code in (404, 422)
    assert (await put("/knowledge/returns-policy/files/empty.md", content=b"",
                      headers=AUTH)).status_code == 422
    monkeypatch.setattr("app.api.knowledge.MAX_FILE_BYTES", 10)
    r = await put("/knowledge/returns-policy/files/big.md", content=b"x" * 11, headers=AUTH)
    assert r.status_code == 413
    assert (await h.client.delete("/knowledge/returns-policy/files/none.md",
                                  headers=AUTH)).status_code == 404
    assert written(tmp_path) == []
