"""Approved knowledge: splitting, reading (Markdown, text, PDF), the on-disk index, retrieval,
per-job scope, change detection and the startup refusal without the extra."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from knowledge_kit import knowledge_config, ready_base, write_collection
from structlog.testing import capture_logs

from agents.config import AgentConfig
from agents.entry import AgentUnavailable, make_job_body
from agents.knowledge import KnowledgeConfig
from agents.knowledge.passages import read_passages, split_text
from agents.overrides import apply_overrides, parse_overrides


def test_paragraphs_are_packed_headings_start_passages_and_long_ones_overlap() -> None:
    text = "# One\n\nshort a.\n\nshort b.\n\n# Two\n\n" + " ".join(f"word{i}." for i in range(60))
    out = split_text(text, max_chars=120, overlap=20)
    assert out[0] == "# One\nshort a.\nshort b."
    assert out[1] == "# Two"
    assert all(len(p) <= 120 for p in out)
    long_pieces = out[2:]
    assert len(long_pieces) >= 4
    # consecutive pieces share words (the overlap), and together they cover the paragraph
    assert set(long_pieces[0].split()) & set(long_pieces[1].split())
    assert "word0." in long_pieces[0] and "word59." in long_pieces[-1]


def test_markdown_text_and_pdf_are_read_and_a_broken_file_is_skipped(tmp_path: Path) -> None:
    root = write_collection(tmp_path / "docs")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (root / ".hidden.md").write_text("secret")
    (root / "image.png").write_bytes(b"\x89PNG")
    with capture_logs() as logs:
        passages = read_passages(root, passage_chars=700, overlap_chars=100)
    sources = {p.source for p in passages}
    assert sources == {"returns.md", "hours.txt", "shipping.pdf#page=1"}
    pdf = next(p for p in passages if p.source.startswith("shipping.pdf"))
    assert "five business days" in pdf.text
    assert any(e["event"] == "knowledge_file_skipped" and e["file"] == "broken.pdf"
               for e in logs)


async def test_retrieval_finds_the_passage_that_answers_with_its_source(
    tmp_path: Path, knowledge_embedder: Any
) -> None:
    base = await ready_base(knowledge_config(tmp_path), knowledge_embedder)
    try:
        found = base.retrieve_sync("How many days do I have to send something back?",
                                   ["store-policy"])
        assert found.hits, "nothing retrieved"
        top = found.hits[0]
        assert (top.collection, top.source) == ("store-policy", "returns.md")
        assert "45 days" in top.text
        assert found.ms > 0
        context = found.context()
        assert "Approved knowledge" in context and "(store-policy: returns.md)" in context
        summary = found.summary()
        assert summary["passages"][0] == {"collection": "store-policy", "source": "returns.md",
                                          "score": top.score}
        canada = base.retrieve_sync("delivery time to Canada", ["store-policy"])
        assert canada.hits[0].source == "shipping.pdf#page=1"
        # a collection outside the list is never searched
        assert base.retrieve_sync("returns", ["other"]).hits == []
    finally:
        await base.aclose()


async def test_the_index_is_loaded_from_disk_and_rebuilt_when_a_file_changes(
    tmp_path: Path, knowledge_embedder: Any
) -> None:
    config = knowledge_config(tmp_path)
    first = await ready_base(config, knowledge_embedder)
    await first.aclose()
    assert (tmp_path / "index" / "store-policy" / "vectors.usearch").is_file()
    with capture_logs() as logs:
        second = await ready_base(config, knowledge_embedder)
    try:
        events = [e["event"] for e in logs]
        assert "knowledge_index_loaded" in events and "knowledge_index_built" not in events
        (tmp_path / "docs" / "pets.md").write_text("Dogs on a leash are welcome in the store.")
        assert await second.check_changes() == ["store-policy"]
        hit = second.retrieve_sync("Can I bring my dog?", ["store-policy"]).hits[0]
        assert hit.source == "pets.md"
        assert await second.check_changes() == []
    finally:
        await second.aclose()


async def test_the_watcher_swaps_in_a_changed_collection(
    tmp_path: Path, knowledge_embedder: Any
) -> None:
    import asyncio

    config = knowledge_config(tmp_path, watch_interval_s=0.05)
    base = await ready_base(config, knowledge_embedder)
    try:
        (tmp_path / "docs" / "hours.txt").write_text("The store is closed on Sundays.")
        async with asyncio.timeout(20):
            while True:
                hits = base.retrieve_sync("Is the store open on Sunday?", ["store-policy"]).hits
                if hits and "Sundays" in hits[0].text:
                    break
                await asyncio.sleep(0.05)
    finally:
        await base.aclose()
    assert all(t.get_name() != "knowledge-watcher" or t.done() for t in asyncio.all_tasks())


def test_a_job_reaches_only_collections_the_configuration_names() -> None:
    config = KnowledgeConfig.model_validate({
        "collections": {"returns-policy": {"path": "a"}, "hr-internal": {"path": "b"}},
        "default_collections": ["returns-policy"],
    })
    assert config.scope(None) == (["returns-policy"], [])
    assert config.scope(["hr-internal"]) == (["hr-internal"], [])
    assert config.scope(["payroll", "returns-policy"]) == (["returns-policy"], ["payroll"])
    assert config.scope([]) == ([], [])
    with pytest.raises(ValueError, match="unknown collections"):
        KnowledgeConfig.model_validate({"collections": {}, "default_collections": ["x"]})
    with pytest.raises(ValueError, match="collection name"):
        KnowledgeConfig.model_validate({"collections": {"Bad Name": {"path": "a"}}})


def test_metadata_scopes_knowledge_and_mcp_headers_without_touching_the_persona() -> None:
    overrides = parse_overrides(
        '{"knowledge": ["returns-policy"], "voice": "amy",'
        ' "mcp_headers": {"crm": {"Authorization": "Bearer t"}}}'
    )
    assert overrides.knowledge == ["returns-policy"]
    assert overrides.mcp_headers == {"crm": {"Authorization": "Bearer t"}}
    persona = apply_overrides(AgentConfig().persona, overrides)
    assert persona.voice == "amy"
    assert not hasattr(persona, "knowledge")
    assert parse_overrides('{"knowledge": "returns-policy"}').knowledge is None  # not a list


def test_a_configured_collection_without_the_extra_refuses_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "usearch", None)  # import usearch now fails
    config = AgentConfig.model_validate({
        "knowledge": {"collections": {"faq": {"path": str(tmp_path)}}},
    })
    with pytest.raises(AgentUnavailable, match=r"knowledge needs usearch; install the "
                                               r"'knowledge' extra") as err:
        make_job_body(config)
    assert "\n" not in str(err.value)
