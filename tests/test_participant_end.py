"""How a job ends is decided once: a cancellation that arrives after the decision (the LiveKit
server's ``JobTermination`` because the agent left, a drain) neither changes the end nor loses
the record."""

from __future__ import annotations

import asyncio

import pytest
from room_kit import Harness, make_spec, settle

from agents.entry import ListeningConversation


class SlowToFinish(ListeningConversation):
    """A conversation whose cancellation takes a while to finish (flushing, say)."""

    finishing = asyncio.Event()

    async def run(self) -> str:
        try:
            return await super().run()
        except asyncio.CancelledError:
            type(self).finishing.set()
            await asyncio.shield(asyncio.sleep(0.2))
            raise


async def test_a_cancel_arriving_while_the_job_finishes_does_not_change_how_it_ended(
    tmp_path,
) -> None:
    SlowToFinish.finishing = asyncio.Event()
    h = Harness(conversation_factory=SlowToFinish,
                config_overrides={"artifacts_dir": str(tmp_path)})
    alice = h.hub.room("room-1").add_participant("alice")
    task = h.start(make_spec())
    await h.running()
    alice.send_data(b'{"type":"user_text","data":"bye"}')
    await settle()
    alice.leave()  # the job decides: room_empty
    async with asyncio.timeout(5):
        await SlowToFinish.finishing.wait()
    task.cancel()  # the server's JobTermination, mid-shutdown
    task.cancel()  # and a second one (a drain deadline) for good measure
    outcome = await h.outcome()
    assert outcome.end_reason == "room_empty"
    assert outcome.record["transcript"][0]["text"] == "bye"
    assert (tmp_path / "AJ_test1.json").exists()
    assert not task.cancelled()


async def test_a_cancel_before_anything_decided_the_end_still_cancels_with_the_record(
    tmp_path,
) -> None:
    h = Harness(config_overrides={"artifacts_dir": str(tmp_path)})
    h.hub.room("room-1").add_participant("alice")
    task = h.start(make_spec())
    await h.running()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h.outcome()
    assert (tmp_path / "AJ_test1.json").exists()
    assert h.reporter.records["end_reason"] == "cancelled"


async def test_data_from_someone_the_agent_has_not_seen_join_yet_is_handled_when_they_do(
) -> None:
    """A caller's data channel can beat the room's news of them by seconds, and the SDK then
    names no sender (seen on a real server: a ``user_text`` typed at once was dropped)."""
    h = Harness()
    room = h.hub.room("room-1")
    room.add_participant("alice")
    h.start(make_spec())
    await h.running()
    agent = room._agents["ai-agent-AJ_test1"]
    agent._remote_data(None, "user_text", b'{"type":"user_text","data":"early words"}')
    await settle()
    assert h.conversation.text_turns == []
    room.add_participant("bob")
    await settle(20)
    assert h.conversation.text_turns == [("bob", "early words")]
    h.conversation.end("done")
    outcome = await h.outcome()
    assert [t["text"] for t in outcome.record["transcript"]] == ["early words"]
