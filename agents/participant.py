"""The job's participant: one AI participant in one room for the life of one job.

It joins (token checked locally first, a deadline per attempt, bounded attempts with backoff),
publishes its audio track, sends ``agent_status`` (the conversation sends the ``todo_list`` it
owns), feeds the :class:`~agents.io.Conversation` with the right people's audio and text turns,
publishes what the conversation produces, and leaves when PROTOCOL.md §2 says so:

- ``JT_PUBLISHER`` / ``JT_PARTICIPANT``: the target participant left (``participant_left``);
- ``JT_ROOM``: no non-agent participant is left (``room_empty``);
- nobody to serve showed up within ``room.participant_wait`` (``participant_absent`` /
  ``room_empty``);
- the room closed (``room_closed``) or the connection was lost for good (``disconnected``);
- the conversation ended on its own (``conversation_ended:<reason>``);
- the job was cancelled or drained: the task is cancelled; the participant leaves cleanly and
  re-raises ``CancelledError``.

Whatever the end, the audio track is unpublished, the room left, the conversation task cancelled
and awaited, and the record written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import structlog
from livekit import rtc

from agents.agent_state import AgentStateAttribute
from agents.audio_frontend import AudioFrontend
from agents.config import AgentConfig
from agents.conversation_context import ConversationContext, ConversationFactory
from agents.early_data import EarlyData
from agents.io import AudioOutput, Conversation
from agents.job import JobFailed, JobOutcome, JobReporter, JobSpec
from agents.messages import InboundError, agent_status, parse_inbound
from agents.overrides import apply_overrides, parse_overrides
from agents.pipeline.aio import TaskSet
from agents.pipeline.trace import AUDIO_NOT_DECODED
from agents.record import JobRecorder, write_artifact
from agents.resume import CHECKPOINT_VERSION, parse_resume
from agents.room_messages import RoomMessageOutput
from agents.transport.base import (
    DisconnectCause,
    RemoteInfo,
    RoomListener,
    RoomTransport,
    TransportError,
    WantsAudio,
)
from agents.transport.lazy_audio import agent_audio
from agents.transport.token import read_token

__all__ = ["AgentParticipant", "ConversationContext", "ConversationFactory", "listens_to"]

log = structlog.get_logger("agents.participant")

MAX_EARLY_EVENTS = 1000
"""Events held while the conversation is being built (about 10 s of one speaker's audio)."""
AUDIENCE_WAIT = 2.0
"""How long after someone to serve is present the agent waits for them to subscribe to its
audio before it speaks anyway (s)."""
STATE_RESEND_DELAY = 1.0
"""A participant who joins gets the agent's current status and todo list at once and again this
long after (s): the first copy can arrive before their data channel or their view of the agent is
ready, and a frontend drops messages from a sender it does not know yet."""


def listens_to(spec: JobSpec) -> WantsAudio:
    """PROTOCOL.md §2: ``JT_ROOM`` hears every non-agent; the others only their target."""
    if spec.job_type == "JT_ROOM":
        return lambda info: not info.is_agent
    target = spec.participant_identity
    return lambda info: info.identity == target


class AgentParticipant(RoomListener):
    """Runs one job in one room; :meth:`run` is the job body's work."""

    def __init__(
        self,
        *,
        spec: JobSpec,
        config: AgentConfig,
        reporter: JobReporter,
        transport_factory: Callable[[], RoomTransport],
        conversation_factory: ConversationFactory,
        output_sample_rate: int | None = None,
        publish_audio_at_start: bool = True,
        on_audio_not_decoded: Callable[[str], None] | None = None,
    ) -> None:
        self._spec = spec
        self._on_audio_not_decoded = on_audio_not_decoded  # the replica's health: job id
        self._publish_at_start = publish_audio_at_start  # False: published at a first frame
        self._config = config
        self._reporter = reporter
        self._transport_factory = transport_factory
        self._conversation_factory = conversation_factory
        self._sample_rate = output_sample_rate or config.room.output_sample_rate
        self._wants = listens_to(spec)
        self._log = log.bind(job_id=spec.job_id, room=spec.room_name)
        self._recorder = JobRecorder(job_id=spec.job_id, room=spec.room_name,
                                     job_type=spec.job_type, agent_identity=spec.agent_identity,
                                     live=reporter.event)
        self._frontend = AudioFrontend(noise_suppression=config.room.noise_suppression)
        self._transport: RoomTransport | None = None
        self._audio: AudioOutput | None = None
        self._conversation: Conversation | None = None
        self._conversation_task: asyncio.Task[str] | None = None
        self._early: list[Callable[[Conversation], None]] = []
        self._present: dict[str, RemoteInfo] = {}
        self._served_someone = False
        self._absence_timer: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[str] | None = None
        self._audio_frames: dict[str, int] = {}
        self._record: dict[str, Any] | None = None
        self._messages: RoomMessageOutput | None = None
        self._audience = asyncio.Event()
        self._audience_timer: asyncio.TimerHandle | None = None
        self._state_tasks = TaskSet()
        self._agent_state: AgentStateAttribute | None = None
        self._early_data = EarlyData()  # packets without a sender, for the next to join

    @property
    def record(self) -> dict[str, Any] | None:
        """The final record, once the job has ended."""
        return self._record

    # --- the job's life ---------------------------------------------------------------------

    async def run(self) -> JobOutcome:
        """Join, live, leave. Once the job has decided how it ends (its target left, the room
        closed, the conversation ended), a cancellation that arrives later (the LiveKit server's
        ``JobTermination`` when the agent leaves, a drain) changes nothing: the finishing steps
        run to the end and the job ends as it decided."""
        self._ended = asyncio.get_running_loop().create_future()
        self._reporter.state("connecting")
        try:
            await self._join()
            end_reason = await self._live()
        except asyncio.CancelledError:
            decided = self._decided()
            if decided is None:
                await self._finish_steps("cancelled")
                raise
            self._log.info("cancel_after_end_ignored", end_reason=decided)
            await self._finish_steps(decided)
            self._uncancel()
            return JobOutcome(end_reason=decided, record=self._record or {})
        except JobFailed as e:
            await self._finish_steps(f"failed: {e.reason}")
            raise JobFailed(e.reason, record=self._record) from e
        except Exception as e:
            self._log.exception("participant_error")
            reason = f"participant error: {type(e).__name__}: {e}"
            await self._finish_steps(f"failed: {reason}")
            raise JobFailed(reason, record=self._record) from e
        cancelled = await self._finish_steps(end_reason)
        if cancelled:
            self._log.info("cancel_after_end_ignored", end_reason=end_reason)
            self._uncancel()
        return JobOutcome(end_reason=end_reason, record=self._record or {})

    def _decided(self) -> str | None:
        ended = self._ended
        if ended is not None and ended.done() and not ended.cancelled():
            return ended.result()
        return None

    @staticmethod
    def _uncancel() -> None:
        task = asyncio.current_task()
        if task is not None:
            while task.cancelling():
                task.uncancel()

    async def _finish_steps(self, end_reason: str) -> bool:
        """:meth:`_shutdown` in a task of its own that no cancellation of ours interrupts (each
        of its steps is bounded). True when a cancellation arrived meanwhile."""
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(end_reason)
        shutdown = asyncio.create_task(self._shutdown(end_reason),
                                       name=f"participant.shutdown.{self._spec.job_id}")
        cancelled = False
        while not shutdown.done():
            try:
                await asyncio.shield(shutdown)
            except asyncio.CancelledError:
                cancelled = True
        shutdown.result()
        return cancelled

    async def _join(self) -> None:
        spec, room_cfg = self._spec, self._config.room
        try:
            claims = read_token(spec.access_token)
        except TransportError as e:
            raise JobFailed(e.reason) from e
        if claims.room != spec.room_name:
            raise JobFailed(f"invalid token: grant is for room {claims.room!r}, "
                            f"not {spec.room_name!r}")
        attempts = room_cfg.connect_attempts
        for attempt in range(1, attempts + 1):
            transport = self._transport_factory()
            try:
                async with asyncio.timeout(room_cfg.connect_timeout):
                    await transport.connect(url=spec.server_url, token=spec.access_token,
                                            listener=self, wants_audio=self._wants,
                                            video=self._config.wants_video)
            except TimeoutError:
                error = f"no answer within {room_cfg.connect_timeout:g} s"
                retryable = True
            except TransportError as e:
                error, retryable = e.reason, e.retryable
            except BaseException:
                await transport.aclose()
                raise
            else:
                self._transport = transport
                # First: it is what announces the agent to the room (see agents.agent_state).
                self._agent_state = AgentStateAttribute(transport, recorder=self._recorder,
                                                        log=self._log)
                self._agent_state.set("initializing")
                for info in transport.remote_participants():
                    self._present.setdefault(info.identity, info)
                self._recorder.mark("connected")
                self._recorder.count("connect_attempts", attempt)
                await asyncio.sleep(0)  # the update goes out now, before the job's set-up work
                return
            await transport.aclose()
            self._log.warning("connect_failed", attempt=attempt, attempts=attempts, error=error)
            if not retryable or attempt == attempts:
                raise JobFailed(f"could not join room {spec.room_name}: {error} "
                                f"(attempt {attempt} of {attempts})")
            await asyncio.sleep(room_cfg.connect_backoff * 2 ** (attempt - 1))

    async def _live(self) -> str:
        transport, spec = self._transport, self._spec
        assert transport is not None and self._ended is not None
        problems: list[str] = []
        overrides = parse_overrides(spec.metadata, problems=problems)
        resume = parse_resume(spec.resume, problems=problems)
        for problem in problems:
            self._recorder.warn(problem)
        persona = apply_overrides(self._config.persona, overrides)
        if resume is not None:
            self._recorder.resume(resume.record)
        self._audio = await agent_audio(transport, sample_rate=self._sample_rate,
                                        speaks=self._publish_at_start)
        messages = RoomMessageOutput(transport=transport, recorder=self._recorder,
                                     agent_identity=transport.identity or spec.agent_identity,
                                     on_status=self._agent_state.set if self._agent_state else None)
        self._messages = messages
        conversation = self._conversation_factory(ConversationContext(
            spec=spec, config=self._config, persona=persona,
            overrides=overrides.model_dump(exclude_none=True), audio=self._audio,
            messages=messages, agent_identity=transport.identity or spec.agent_identity,
            audience=self._audience, resume=resume, checkpoint=self._checkpoint,
        ))
        self._conversation = conversation
        for call in self._early:
            call(conversation)
        self._early.clear()
        self._check_presence(initial=True)
        self._reporter.state("running")
        self._recorder.mark("running")
        self._log.info("participant_running", job_type=spec.job_type)
        await messages.publish(agent_status("listening", "resumed" if resume else None))
        self._conversation_task = asyncio.create_task(
            conversation.run(), name=f"conversation.{spec.job_id}"
        )
        await asyncio.wait({self._conversation_task, self._ended},
                           return_when=asyncio.FIRST_COMPLETED)
        if self._ended.done():
            return self._ended.result()
        try:
            reason = self._conversation_task.result()
        except Exception as e:
            raise JobFailed(f"conversation failed: {type(e).__name__}: {e}") from e
        return f"conversation_ended:{reason}"

    async def _shutdown(self, end_reason: str) -> None:
        if self._record is not None:
            return
        if self._absence_timer is not None:
            self._absence_timer.cancel()
        if self._audience_timer is not None:
            self._audience_timer.cancel()
        await self._state_tasks.cancel()
        task = self._conversation_task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        extra: dict[str, Any] = {}
        if self._conversation is not None:
            try:
                extra = self._conversation.record()
            except Exception:
                self._log.exception("conversation_record_failed")
        if self._agent_state is not None:
            await self._agent_state.aclose()
        if self._transport is not None:
            await self._transport.aclose()  # unpublishes, stops readers, leaves; never raises
        self._recorder.counters.update(
            {f"audio_frames.{k}": v for k, v in self._audio_frames.items()}
        )
        self._record = self._recorder.finish(end_reason=end_reason, extra=extra or None)
        self._log.info("participant_left_room", end_reason=end_reason)
        directory = self._config.artifacts_dir
        if directory is not None:
            try:
                path = await asyncio.to_thread(write_artifact, directory, self._record)
            except OSError as e:
                self._log.error("artifact_write_failed", error=str(e))
                self._record["artifact_error"] = str(e)
            else:
                self._record["artifact"] = str(path)
        for key, value in self._record.items():  # reaches the job even when cancelled
            self._reporter.record(key, value)

    def _checkpoint(self, conversation: dict[str, Any]) -> None:
        self._reporter.checkpoint({"v": CHECKPOINT_VERSION, "conversation": conversation,
                                   "record": self._recorder.checkpoint()})

    def _end(self, reason: str) -> None:
        if self._ended is not None and not self._ended.done():
            self._log.info("job_ending", end_reason=reason)
            self._ended.set_result(reason)

    # --- presence rules ---------------------------------------------------------------------

    def _serves(self, info: RemoteInfo) -> bool:
        return self._wants(info)

    def _check_presence(self, *, initial: bool = False) -> None:
        served = [i for i in self._present.values() if self._serves(i)]
        if served:
            self._served_someone = True
            if not self._audience.is_set() and self._audience_timer is None:
                self._audience_timer = asyncio.get_running_loop().call_later(
                    AUDIENCE_WAIT, self._audience.set)
            if self._absence_timer is not None:
                self._absence_timer.cancel()
                self._absence_timer = None
            return
        absent = "room_empty" if self._spec.job_type == "JT_ROOM" else "participant_absent"
        if self._served_someone:
            self._end("room_empty" if self._spec.job_type == "JT_ROOM" else "participant_left")
        elif initial:
            self._absence_timer = asyncio.get_running_loop().call_later(
                self._config.room.participant_wait, self._end, absent
            )

    # --- RoomListener -----------------------------------------------------------------------

    def _to_conversation(self, call: Callable[[Conversation], None]) -> None:
        if self._conversation is not None:
            call(self._conversation)
        elif len(self._early) < MAX_EARLY_EVENTS:
            self._early.append(call)
        else:
            self._recorder.count("early_events_dropped")

    def participant_joined(self, info: RemoteInfo) -> None:
        known = info.identity in self._present
        self._present[info.identity] = info
        self._log.info("remote_joined", identity=info.identity, agent=info.is_agent)
        if not known and self._early_data and not info.is_agent:
            self._replay_early_data(info.identity)
        if self._conversation is not None:
            self._check_presence()
            if not known and not info.is_agent:
                self._send_state_later([info.identity], delays=(0.0, STATE_RESEND_DELAY))

    def agent_audio_subscribed(self) -> None:
        """Someone hears the agent: they know its participant too, so what it sent before they
        did may have been dropped by their frontend; send the current state once more."""
        self._log.info("agent_audio_subscribed")
        self._audience.set()
        if self._conversation is not None:
            self._send_state_later(None, delays=(0.0,))

    def _send_state_later(self, to: list[str] | None, *, delays: tuple[float, ...]) -> None:
        messages = self._messages
        if messages is None or self._record is not None:
            return

        async def send() -> None:
            waited = 0.0
            for delay in delays:
                await asyncio.sleep(delay - waited)
                waited = delay
                await messages.send_state(to)

        self._state_tasks.spawn(send(), name=f"participant.state.{self._spec.job_id}")

    def participant_left(self, identity: str) -> None:
        info = self._present.pop(identity, None)
        self._frontend.drop(identity)
        if info is not None and self._serves(info):
            self._to_conversation(lambda c: c.speaker_left(identity))
        self._log.info("remote_left", identity=identity)
        if self._conversation is not None:
            self._check_presence()

    def audio_track_subscribed(self, identity: str) -> None:
        self._recorder.speakers.add(identity)
        self._log.info("listening_to", identity=identity)

    def audio_not_decoded(self, identity: str, packets: int) -> None:
        # Logged as an error by the transport; the record says so too, whatever the job's end.
        AUDIO_NOT_DECODED.inc()
        self._recorder.warn(f"audio from {identity} arrives ({packets} packets) but is not "
                            "decoded: the agent cannot hear it")
        if self._on_audio_not_decoded is not None:
            self._on_audio_not_decoded(self._spec.job_id)

    def audio_track_unsubscribed(self, identity: str) -> None:
        self._frontend.drop(identity)
        self._to_conversation(lambda c: c.speaker_left(identity))

    def audio_frame(self, identity: str, frame: rtc.AudioFrame) -> None:
        self._audio_frames[identity] = self._audio_frames.get(identity, 0) + 1
        frame = self._frontend.process(identity, frame)
        conversation = self._conversation
        if conversation is not None:
            conversation.push_audio(identity, frame)
        else:
            self._to_conversation(lambda c: c.push_audio(identity, frame))

    def audio_gap(self, identity: str, ms: float) -> None:
        # Only a conversation that decides turns uses it (the voice pipeline).
        gap = getattr(self._conversation, "audio_gap", None)
        if gap is not None:
            gap(identity, ms)

    def video_frame(self, identity: str, source: str, frame: rtc.VideoFrame) -> None:
        conversation = self._conversation
        if conversation is None:
            return  # a video frame is superseded by the next one; nothing to keep
        try:
            conversation.push_video(identity, source, frame)
        except ValueError as e:
            self._recorder.count("video_frames_rejected")
            self._log.warning("video_frame_rejected", speaker=identity, error=str(e))

    def video_track_ended(self, identity: str, source: str) -> None:
        # Only a conversation that watches video keeps frames (WatchingConversation).
        conversation = self._conversation
        ended = getattr(conversation, "video_track_ended", None)
        if ended is not None:
            ended(identity, source)

    def _replay_early_data(self, identity: str) -> None:
        for topic, payload in self._early_data.take():
            self._recorder.count("inbound_early")
            self.data_received(identity, topic, payload)

    def data_received(self, identity: str | None, topic: str, payload: bytes) -> None:
        # a sender the room cannot name yet: the next person to join (bounded)
        if identity is None and self._record is None and self._early_data.hold(topic, payload):
            return
        info = self._present.get(identity) if identity is not None else None
        if info is None or not self._serves(info):
            self._recorder.count("inbound_ignored")
            self._log.info("inbound_data_ignored", kind="not_listened_to", sender=identity)
            return
        try:
            message = parse_inbound(payload)
        except InboundError as e:
            self._recorder.count("inbound_ignored")
            self._log.info("inbound_data_ignored", kind=e.kind, sender=identity, topic=topic[:64])
            return
        sender, text = info.identity, message.data
        self._recorder.speakers.add(sender)
        self._recorder.user_text(sender, text)
        self._to_conversation(lambda c: c.push_text(sender, text))

    def connection_changed(self, state: Literal["reconnecting", "reconnected"]) -> None:
        self._recorder.count(state)
        self._log.warning("room_connection", state=state)
        if state == "reconnecting":
            self._reporter.state("connecting", detail="reconnecting")
        else:
            self._reporter.state("running", detail="reconnected")

    def disconnected(self, cause: DisconnectCause, detail: str) -> None:
        self._log.warning("room_disconnected", cause=cause, detail=detail)
        self._recorder.count(f"disconnect.{detail}")
        self._end(cause)
