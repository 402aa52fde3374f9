"""A real ``livekit-server`` for the ``livekit`` test tier, and what talks to it.

These tests run only inside a private network namespace made for the run (``make
test-livekit``, i.e. ``scripts/netns-run pytest -m livekit``): the server, the service and the
SDK clients then talk to each other over loopback and can reach nothing else. Inside the
namespace the ports are ours, so they are fixed (the server's signal port, its one UDP media port
and the port our webhook receiver listens on).

Not a test module: the fixtures are imported by ``conftest.py``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SERVER_VERSION = "v1.13.5"
API_KEY = "APIlivekittest"
API_SECRET = "livekit-test-secret-0123456789abcdef0123456789"
SIGNAL_PORT = 7880
RTC_UDP_PORT = 7882
WEBHOOK_PORT = 18080
"""The service under test listens here when the server's webhooks must reach it."""
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MIC_RATE = 48000
FRAME_SAMPLES = MIC_RATE // 100


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies, however it dies, so no
    server or service outlives a killed test run (Linux ``PR_SET_PDEATHSIG``)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def in_private_netns() -> bool:
    """True inside a namespace made by ``scripts/netns-run`` (its veth is there)."""
    try:
        return "lkveth0:" in Path("/proc/net/dev").read_text()
    except OSError:
        return False


def server_binary() -> Path | None:
    """``$LIVEKIT_SERVER``, then the project's ``.tools/livekit-server``, then ``PATH``."""
    explicit = os.environ.get("LIVEKIT_SERVER")
    if explicit:
        return Path(explicit)
    local = REPO / ".tools" / "livekit-server"
    if local.exists():
        return local
    found = shutil.which("livekit-server")
    return Path(found) if found else None


class ServerProcess(abc.ABC):
    """A server binary the tests run: started with its log in ``workdir`` and dying with the
    test process, ready when :meth:`_ready` says so; ``stop`` is idempotent and escalates to
    SIGKILL. Every process it starts it stops."""

    name = "server"
    start_timeout = START_TIMEOUT

    def __init__(self, *, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The command line (may write the server's configuration first)."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """One quick readiness probe."""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode}: {self.tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {self.start_timeout} s: {self.tail()}")

    def _signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        proc.send_signal(sig)

    def stop(self, *, sig: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        self._signal(proc, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        """An abrupt end: no goodbye to anyone."""
        self.stop(sig=signal.SIGKILL)

    def restart(self, *, down_for: float = 0.0) -> None:
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class LiveKitServer(ServerProcess):
    """One ``livekit-server`` process on loopback."""

    name = "livekit-server"

    def __init__(
        self,
        *,
        binary: Path,
        workdir: Path,
        port: int = SIGNAL_PORT,
        udp_port: int = RTC_UDP_PORT,
        webhook_urls: list[str] | None = None,
    ) -> None:
        super().__init__(binary=binary, workdir=workdir)
        self.port = port
        self.udp_port = udp_port
        self.webhook_urls = webhook_urls or []
        self.api_key = API_KEY
        self.api_secret = API_SECRET

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "log_level": "info",
            "keys": {self.api_key: self.api_secret},
            "rtc": {
                "node_ip": "127.0.0.1",
                "use_external_ip": False,
                "enable_loopback_candidate": True,
                "interfaces": {"includes": ["lo"]},
                "udp_port": self.udp_port,
                "tcp_port": 0,
                "stun_servers": ["127.0.0.1:3478"],
                "use_mdns": False,
            },
            "turn": {"enabled": False},
            "room": {"empty_timeout": 30, "departure_timeout": 5},
        }
        if self.webhook_urls:
            cfg["webhook"] = {"api_key": self.api_key, "urls": self.webhook_urls}
        return cfg

    def _command(self) -> list[str]:
        cfg_path = self.workdir / "livekit.yaml"
        cfg_path.write_text(yaml.safe_dump(self.config()))
        return [str(self.binary), "--config", str(cfg_path)]

    def _ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.http_url, timeout=1).status_code == 200
        return False

    def token(self, room: str, identity: str, *, ttl: float = 3600, name: str = "") -> str:
        """A caller's token (a standard participant): join, publish, subscribe, data."""
        import datetime

        from livekit import api

        grants = api.VideoGrants(room_join=True, room=room, can_publish=True,
                                 can_subscribe=True, can_publish_data=True)
        return (api.AccessToken(self.api_key, self.api_secret).with_identity(identity)
                .with_name(name or identity).with_grants(grants)
                .with_ttl(datetime.timedelta(seconds=ttl)).to_jwt())

    def agent_token(self, room: str, identity: str, *, ttl: float = 3600) -> str:
        """The token a dispatcher would put in a job notification for the agent."""
        from agents.transport.token import mint_agent_token

        return mint_agent_token(api_key=self.api_key, api_secret=self.api_secret, room=room,
                                identity=identity, ttl=ttl)

    def api(self) -> Any:
        from livekit import api

        return api.LiveKitAPI(self.http_url, self.api_key, self.api_secret)


def require_real_server() -> Path:
    if not in_private_netns():
        pytest.fail("the livekit tier runs inside its own network namespace: "
                    "`make test-livekit` (scripts/netns-run pytest -m livekit)")
    binary = server_binary()
    if binary is None or not binary.exists():
        pytest.fail("no livekit-server: `make livekit-server` builds it into .tools/ (needs Go)")
    return binary


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    """The session's server (with LiveKit webhooks to ``WEBHOOK_PORT``). A test that stops or
    restarts it leaves it running again (see ``fresh_livekit_server`` for a private one)."""
    server = LiveKitServer(
        binary=require_real_server(), workdir=tmp_path_factory.mktemp("livekit"),
        webhook_urls=[f"http://127.0.0.1:{WEBHOOK_PORT}/livekit/webhook"],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(livekit_server: LiveKitServer) -> Iterator[LiveKitServer]:
    """The session's server, made sure to be up before and after the test."""
    livekit_server.start()
    yield livekit_server
    livekit_server.start()


# --- speech rendered offline --------------------------------------------------------------------

_SPEECH_CACHE: dict[tuple[str, float], np.ndarray] = {}


async def render_speech(text: str, *, length_scale: float = 1.05) -> np.ndarray:
    """``text`` spoken by the embedded Piper voice, as 48 kHz mono int16 (cached per text)."""
    key = (text, length_scale)
    if key in _SPEECH_CACHE:
        return _SPEECH_CACHE[key]
    from livekit import rtc

    from agents.providers.piper_tts import PiperTTS

    tts = PiperTTS(name="caller-voice", length_scale=length_scale, streaming=False)
    try:
        chunks = [c async for c in tts.synthesize(text)]
    finally:
        await tts.aclose()
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    resampler = rtc.AudioResampler(tts.sample_rate, MIC_RATE, num_channels=1)
    frames = resampler.push(bytearray(pcm.tobytes())) + resampler.flush()
    out = np.concatenate([np.frombuffer(f.data, np.int16) for f in frames])
    _SPEECH_CACHE[key] = out
    return out


def voiced(samples: np.ndarray, *, dbfs: float = -45.0) -> bool:
    if samples.size == 0:
        return False
    rms = float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))
    return rms > 32768.0 * 10 ** (dbfs / 20)


# --- callers: one interface, two rooms ----------------------------------------------------------

@dataclass
class Received:
    type: str
    data: Any
    sender: str | None
    topic: str
    at: float


@dataclass
class AgentAudio:
    """What a caller heard of the agents: (loop time, voiced) per 10 ms frame."""

    frames: list[tuple[float, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, at: float, is_voiced: bool) -> None:
        self.frames.append((at, is_voiced))
        self.changed.set()

    async def wait_voiced_after(self, t: float, *, within: float = 15.0) -> float:
        """When the agent was first heard at or after ``t`` (waits for it)."""
        async with asyncio.timeout(within):
            while (at := self.first_voiced_after(t)) is None:
                self.changed.clear()
                await self.changed.wait()
        return at

    async def wait_silent_after(self, t: float, *, silence_s: float = 0.3,
                                within: float = 10.0) -> float:
        """The last voiced frame after ``t`` once ``silence_s`` of silence followed it."""
        async with asyncio.timeout(within):
            while (at := self.last_voiced_before_silence(t, silence_s=silence_s)) is None:
                self.changed.clear()
                await self.changed.wait()
        return at

    def first_voiced_after(self, t: float) -> float | None:
        return next((at for at, v in self.frames if v and at >= t), None)

    def last_voiced_before_silence(self, t: float, *, silence_s: float = 0.3) -> float | None:
        """The end of the agent's sound after ``t``: the last voiced frame followed by at least
        ``silence_s`` of frames without sound (None if it has not stopped yet)."""
        last: float | None = None
        for at, v in self.frames:
            if at < t:
                continue
            if v:
                last = at
            elif last is not None and at - last >= silence_s:
                return last
        return None


class Caller(abc.ABC):
    """A person in the room: microphone in real time (silence between lines), typed messages,
    every data message received (parsed as the seed-002 frontend does), the agents' audio."""

    identity: str

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.received: list[Received] = []
        self.audio = AgentAudio()
        self._changed = asyncio.Event()
        self._pending = np.zeros(0, np.int16)
        self._spoken = asyncio.Event()
        self._spoken.set()
        self._speech_end = 0.0
        self._mic_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # subclass hooks
    @abc.abstractmethod
    async def join(self) -> None: ...

    @abc.abstractmethod
    async def _publish_microphone(self) -> None: ...

    @abc.abstractmethod
    async def _push_frame(self, pcm: np.ndarray) -> None: ...

    async def send_text(self, text: str) -> None:
        await self.send_raw(json.dumps({"type": "user_text", "data": text}).encode())

    @abc.abstractmethod
    async def send_raw(self, payload: bytes) -> None: ...

    @abc.abstractmethod
    async def _leave(self) -> None: ...

    # shared behaviour
    def _on_data(self, payload: bytes, sender: str | None, topic: str) -> None:
        try:
            msg = json.loads(payload)
            item = Received(type=msg["type"], data=msg["data"], sender=sender, topic=topic,
                            at=asyncio.get_running_loop().time())
        except (ValueError, KeyError, TypeError):
            item = Received(type="<unparsable>", data=payload, sender=sender, topic=topic,
                            at=asyncio.get_running_loop().time())
        self.received.append(item)
        self._changed.set()

    def messages(self, type_: str | None = None) -> list[Received]:
        return [m for m in self.received if type_ is None or m.type == type_]

    async def wait_message(self, type_: str, where: Callable[[Any], bool] | None = None, *,
                           within: float = 20.0, after: int = 0,
                           sender: str | None = None) -> Received:
        """The first message of ``type_`` (from index ``after`` on) whose ``data`` matches
        (and that the client could attribute to ``sender``, when given)."""
        async with asyncio.timeout(within):
            while True:
                for m in self.received[after:]:
                    if m.type == type_ and (where is None or where(m.data)) and (
                        sender is None or m.sender == sender
                    ):
                        return m
                self._changed.clear()
                await self._changed.wait()

    async def start_microphone(self) -> None:
        await self._publish_microphone()
        self._mic_task = asyncio.create_task(self._mic(), name=f"caller.mic.{self.identity}")
        self._tasks.append(self._mic_task)

    async def _mic(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        silence = np.zeros(FRAME_SAMPLES, np.int16)
        while True:
            if self._pending.size:
                chunk, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
                if chunk.size < FRAME_SAMPLES:
                    chunk = np.concatenate([chunk, silence[: FRAME_SAMPLES - chunk.size]])
                if not self._pending.size:
                    self._speech_end = loop.time() + 0.01
                    self._spoken.set()
            else:
                chunk = silence
            await self._push_frame(chunk)
            sent += 1
            delay = start + sent * 0.01 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def say(self, pcm: np.ndarray) -> float:
        """Speak ``pcm`` (48 kHz int16) in real time; returns the loop time speech ended."""
        if self._mic_task is None:
            raise RuntimeError("start_microphone() first")
        self._spoken.clear()
        self._pending = np.concatenate([self._pending, pcm])
        async with asyncio.timeout(pcm.size / MIC_RATE + 10):
            await self._spoken.wait()
        return self._speech_end

    async def leave(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._leave()


class RealCaller(Caller):
    """A caller on the real server through the ``livekit`` Python SDK."""

    def __init__(self, *, server: LiveKitServer, room: str, identity: str,
                 mic_queue_ms: int = 100, listen: bool = True) -> None:
        super().__init__(identity)
        from livekit import rtc

        self._rtc = rtc
        self.mic_queue_ms = mic_queue_ms
        """The microphone source's queue: once the pacing loop got ahead of real time (after a
        stall it catches up), speech leaves up to this much after ``say`` says it ended."""
        self.server = server
        self.room_name = room
        self.room = rtc.Room()
        self._source: Any = None
        self._streams: list[Any] = []
        self.room.on("data_received", self._data_received)
        if listen:  # else the agent's track is subscribed but never decoded here (a load
            # generator that only counts joins)
            self.room.on("track_subscribed", self._track_subscribed)

    def _data_received(self, packet: Any) -> None:
        sender = packet.participant.identity if packet.participant is not None else None
        self._on_data(packet.data, sender, packet.topic or "")

    def _track_subscribed(self, track: Any, _pub: Any, participant: Any) -> None:
        if track.kind != self._rtc.TrackKind.KIND_AUDIO:
            return
        stream = self._rtc.AudioStream.from_track(track=track, sample_rate=MIC_RATE,
                                                  num_channels=1)
        self._streams.append(stream)
        self._tasks.append(asyncio.create_task(self._listen(stream),
                                               name=f"caller.listen.{participant.identity}"))

    async def _listen(self, stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for event in stream:
            samples = np.frombuffer(event.frame.data, np.int16)
            self.audio.add(loop.time(), voiced(samples))

    async def join(self) -> None:
        token = self.server.token(self.room_name, self.identity)
        await self.room.connect(self.server.url, token,
                                self._rtc.RoomOptions(auto_subscribe=True))

    async def _publish_microphone(self) -> None:
        rtc = self._rtc
        self._source = rtc.AudioSource(MIC_RATE, 1, queue_size_ms=self.mic_queue_ms)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        await self.room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

    async def _push_frame(self, pcm: np.ndarray) -> None:
        frame = self._rtc.AudioFrame(pcm.tobytes(), MIC_RATE, 1, pcm.size)
        await self._source.capture_frame(frame)

    async def send_raw(self, payload: bytes) -> None:
        await self.room.local_participant.publish_data(payload, reliable=True,
                                                       topic="user_text")

    async def _leave(self) -> None:
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        self._streams.clear()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await self.room.disconnect()
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()


class MemoryCaller(Caller):
    """The same caller in the in-memory room (:mod:`agents.transport.memory`)."""

    def __init__(self, *, hub: Any, room: str, identity: str) -> None:
        super().__init__(identity)
        self.hub = hub
        self.room_name = room
        self.participant: Any = None
        self._seen = 0
        self._listened: set[str] = set()

    async def join(self) -> None:
        self.participant = self.hub.room(self.room_name).add_participant(self.identity)
        self._tasks.append(asyncio.create_task(self._poll(), name=f"caller.poll.{self.identity}"))

    async def _poll(self) -> None:
        """The in-memory room appends what a participant receives; turn it into events, and
        listen to every agent track that appears."""
        from livekit import rtc

        room = self.hub.room(self.room_name)
        while True:
            received = self.participant.received
            while self._seen < len(received):
                item = received[self._seen]
                self._seen += 1
                self._on_data(item.payload, item.sender, item.topic)
            for identity in list(room.agent_identities):
                track = room.agent_audio_track(identity)
                if track is not None and identity not in self._listened:
                    self._listened.add(identity)
                    stream = rtc.AudioStream.from_track(track=track, sample_rate=MIC_RATE,
                                                        num_channels=1)
                    self._tasks.append(asyncio.create_task(
                        self._listen(stream), name=f"caller.listen.{identity}"))
            await asyncio.sleep(0.005)

    async def _listen(self, stream: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for event in stream:
                self.audio.add(loop.time(), voiced(np.frombuffer(event.frame.data, np.int16)))
        finally:
            await stream.aclose()

    async def _publish_microphone(self) -> None:
        self.participant.publish_audio()

    async def _push_frame(self, pcm: np.ndarray) -> None:
        from livekit import rtc

        if not self.participant.left:
            self.participant.push_audio(rtc.AudioFrame(pcm.tobytes(), MIC_RATE, 1, pcm.size))

    async def send_raw(self, payload: bytes) -> None:
        self.participant.send_data(payload, topic="user_text")

    async def _leave(self) -> None:
        if self.participant is not None:
            await self.participant.aclose()


# --- the service as a user runs it --------------------------------------------------------------

class ServiceProcess:
    """``external-agent serve`` in a subprocess, configured by a YAML file and the environment
    names the README documents. ``stop`` sends SIGTERM (the drain) and escalates."""

    def __init__(self, *, workdir: Path, config: dict[str, Any], env: dict[str, str],
                 port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.log_path = workdir / f"service-{port}.log"
        self._config = config
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        # httpx keeps an idle connection 5 s, as long as the service does (its
        # keep_alive_timeout): a request sent on one the service is closing that very moment
        # fails with ReadError. A shorter expiry here never reuses a connection that old.
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=15,
            limits=httpx.Limits(keepalive_expiry=2.0))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    async def start(self, *, within: float = 120.0) -> None:
        import socket

        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"port {self.port} is taken: a service from an earlier test "
                                   "is still running; this one would answer for it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.workdir / f"config-{self.port}.yaml"
        cfg_path.write_text(yaml.safe_dump(self._config))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EXTERNAL_AGENT_", "LIVEKIT_"))}
        env.update(self._env)
        env["EXTERNAL_AGENT_CONFIG"] = str(cfg_path)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        try:
            async with asyncio.timeout(within):
                while True:
                    if self._proc.poll() is not None:
                        raise RuntimeError(
                            f"service exited {self._proc.returncode}: {self.tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await self.client.get("/ready")).status_code == 200:
                            return
                    await asyncio.sleep(0.1)
        except BaseException:
            # never leave a half-started service holding the port for the next test
            self._proc.kill()
            self._proc.wait(10)
            raise

    def signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        assert self._proc is not None
        async with asyncio.timeout(within):
            while self._proc.poll() is None:  # noqa: ASYNC110 - a process has no event to await
                await asyncio.sleep(0.05)
        return self._proc.returncode

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await self.wait_exit(40)
            except TimeoutError:
                proc.kill()
                proc.wait(10)
        await self.client.aclose()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.asynccontextmanager
async def running_service(
    *, workdir: Path, config: dict[str, Any], env: dict[str, str], port: int
) -> AsyncIterator[ServiceProcess]:
    service = ServiceProcess(workdir=workdir, config=config, env=env, port=port)
    try:
        await service.start()
        yield service
    finally:
        await service.stop()
