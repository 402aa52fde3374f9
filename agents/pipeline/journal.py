"""What one voice conversation keeps of itself: :class:`Journal`.

The per-turn traces, the transcript (the caller's words and what the agent said), the barge-in
and failure counters: the job record's conversation part, and, with the model's history and the
todo board, the checkpoint a leg taking over after failover resumes from
(:func:`agents.resume.conversation_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents.pipeline.trace import TurnTrace, append_capped
from agents.providers.base import ChatMessage
from agents.resume import ConversationCheckpoint, conversation_state
from agents.tools import TodoBoard


class Journal:
    def __init__(self, *, history: Callable[[], Sequence[ChatMessage]], board: TodoBoard,
                 on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
                 resume: ConversationCheckpoint | None = None) -> None:
        self._history = history
        self._board = board
        self._on_checkpoint = on_checkpoint
        self.turns: list[dict[str, Any]] = []
        self.transcript: list[dict[str, Any]] = (
            list(resume.transcript) if resume is not None else [])
        self.counters = {"barge_ins": 0, "false_interruptions": 0, "provider_failures": 0}

    def user_said(self, speaker: str, text: str, turn_id: str) -> None:
        append_capped(self.transcript,
                      {"role": "user", "speaker": speaker, "text": text, "turn_id": turn_id})
        self.save()  # a leg taking over answers these words

    def agent_said(self, text: str, *, interrupted: bool, turn_id: str) -> None:
        append_capped(self.transcript, {"role": "agent", "text": text,
                                        "interrupted": interrupted, "turn_id": turn_id})

    def turn(self, trace: TurnTrace) -> None:
        append_capped(self.turns, trace.record())

    def save(self) -> None:
        """Hand the checkpoint over (when the job keeps one)."""
        if self._on_checkpoint is not None:
            self._on_checkpoint(conversation_state(
                history=self._history(), board=self._board, transcript=self.transcript,
                turns=len(self.turns)))

    def record(self) -> dict[str, Any]:
        return {
            "turns": list(self.turns),
            "transcript": list(self.transcript),
            "todo": {"items": [i.model_dump() for i in self._board.items],
                     "notes": self._board.notes},
            "counters": dict(self.counters),
        }
