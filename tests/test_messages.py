"""The data-message module: every message builds, encodes and parses back as a client would,
and every kind of bad inbound packet is refused with a reason."""

from __future__ import annotations

import json
import re

import pytest

from agents import messages as m

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def every_outbound() -> list[m.OutboundMessage]:
    return [
        m.transcript_chunk(text="hi", is_final=True, participant_id="u1", transcript_id="T1"),
        m.agent_status("listening"),
        m.agent_status("speaking", "reading the answer"),
        m.todo_list([m.TodoItem(id="a", description="Collect name", required=True)]),
        m.handoff(reason="user asked", summary="billing question"),
        m.agent_metrics(turn_id="t1", stages={"eou": 10.0, "tts_first_audio": 420.5}),
        m.vision_description(description="a whiteboard", participant_id="u1",
                             track_source="screen_share"),
    ]


@pytest.mark.parametrize("message", every_outbound(), ids=lambda msg: msg.type)
def test_outbound_round_trip_with_topic_equal_to_type(message: m.OutboundMessage) -> None:
    wire = message.encode()
    obj = json.loads(wire.decode("utf-8"))
    assert set(obj) == {"type", "data"}
    assert obj["type"] == message.topic == message.type
    assert m.parse_outbound(wire) == message
    assert b"null" not in wire  # None fields are dropped


def test_transcript_chunk_fields_match_the_protocol() -> None:
    a = m.transcript_chunk(text="x", is_final=False, participant_id="u", transcript_id="T",
                           confidence=3.0)
    b = m.transcript_chunk(text="x", is_final=False, participant_id="u", transcript_id="T")
    assert a.data.confidence == 1.0  # clamped
    assert ISO_Z.match(a.data.timestamp)
    assert a.data.chunk_id != b.data.chunk_id
    assert a.data.transcript_id == b.data.transcript_id == "T"


def test_outbound_parser_rejects_unknown_status_and_extra_fields() -> None:
    with pytest.raises(ValueError):
        m.parse_outbound(b'{"type":"agent_status","data":{"status":"dancing"}}')
    with pytest.raises(ValueError):
        m.parse_outbound(b'{"type":"agent_status","data":{"status":"listening","x":1}}')


def test_user_text_parses() -> None:
    msg = m.parse_inbound(b'{"type":"user_text","data":"hello","extra":true}')
    assert msg.data == "hello"


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"{oops", "malformed_json"),
        (b"\xff\xfe\x00", "not_utf8"),
        (b'"just a string"', "not_an_object"),
        (b'{"type":"ping"}', "unknown_type"),
        (b'{"data":"no type"}', "unknown_type"),
        (b'{"type":"user_text","data":""}', "invalid_user_text"),
        (b'{"type":"user_text","data":"  \\n "}', "invalid_user_text"),
        (b'{"type":"user_text","data":{"text":"x"}}', "invalid_user_text"),
        (b'{"type":"user_text","data":"' + b"x" * (m.MAX_USER_TEXT_CHARS + 1) + b'"}',
         "invalid_user_text"),
        (b" " * (m.MAX_INBOUND_BYTES + 1), "too_large"),
    ],
)
def test_bad_inbound_is_refused_with_its_kind(payload: bytes, kind: str) -> None:
    with pytest.raises(m.InboundError) as e:
        m.parse_inbound(payload)
    assert e.value.kind == kind
