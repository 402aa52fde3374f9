"""A protocol-level LiveKit agent server for tests.

Serves ``/agent`` on 127.0.0.1 with aiohttp, checks the worker token (agent grant, signed with the
test key/secret), and speaks the real ``WorkerMessage`` / ``ServerMessage`` protobufs from
``livekit.protocol.agent``. Tests script the server's part (availability requests, assignments,
terminations, dropped connections) and assert on the protobuf messages the worker sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from livekit import api
from livekit.protocol import agent as pb
from livekit.protocol import models


@dataclass
class Received:
    """One message a worker sent, with the connection it came on (1-based)."""

    conn: int
    msg: pb.WorkerMessage

    @property
    def kind(self) -> str | None:
        return self.msg.WhichOneof("message")


@dataclass
class _Conn:
    number: int
    ws: web.WebSocketResponse
    request: web.Request
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class AgentProtocolServer:
    def __init__(self, *, api_key: str = "devkey", api_secret: str = "secret") -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.received: list[Received] = []
        self.auth_failures = 0
        self.refuse_next = 0
        """Answer the next N handshakes with HTTP 503 (to exercise the worker's backoff)."""
        self.answer_pings = True
        self.connections = 0
        self._conn: _Conn | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/agent", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting ----------------------------------------------------------------------------

    async def send(self, msg: pb.ServerMessage) -> None:
        assert self._conn is not None, "no worker connected"
        await self._conn.ws.send_bytes(msg.SerializeToString())

    async def request_availability(
        self, job: pb.Job, *, resuming: bool = False, within: float = 5.0
    ) -> pb.AvailabilityResponse:
        start = len(self.received)
        await self.send(
            pb.ServerMessage(availability=pb.AvailabilityRequest(job=job, resuming=resuming))
        )
        got = await self.wait_for(
            lambda r: r.kind == "availability" and r.msg.availability.job_id == job.id,
            after=start,
            within=within,
        )
        return got.msg.availability

    async def assign(self, job: pb.Job, *, token: str, url: str = "") -> None:
        await self.send(
            pb.ServerMessage(assignment=pb.JobAssignment(job=job, token=token, url=url))
        )

    async def terminate(self, job_id: str) -> None:
        await self.send(pb.ServerMessage(termination=pb.JobTermination(job_id=job_id)))

    async def drop(self) -> None:
        """Cut the current connection without a close handshake (a network drop)."""
        conn = self._conn
        assert conn is not None, "no worker connected"
        transport = conn.request.transport
        if transport is not None:
            transport.abort()
        await conn.closed.wait()

    async def wait_connections(self, n: int, *, within: float = 5.0) -> None:
        """Wait until ``n`` workers have registered in total."""
        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(lambda: self.connections >= n)

    async def wait_for(
        self,
        pred: Callable[[Received], bool],
        *,
        after: int = 0,
        within: float = 5.0,
    ) -> Received:
        """The first received message (at index >= ``after``) matching ``pred``."""

        def find() -> Received | None:
            for r in self.received[after:]:
                if pred(r):
                    return r
            return None

        async with asyncio.timeout(within):
            async with self._changed:
                await self._changed.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    def of_kind(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    # -- the server's part --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            claims = api.TokenVerifier(self.api_key, self.api_secret).verify(header[7:])
        except Exception:
            return False
        return bool(claims.video and claims.video.agent)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return web.Response(status=503, text="unavailable")
        if not self._authorized(request):
            self.auth_failures += 1
            return web.Response(status=401, text="invalid token")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(number=self.connections + 1, ws=ws, request=request)
        try:
            first = await ws.receive()
            if first.type != WSMsgType.BINARY:
                return ws
            msg = pb.WorkerMessage.FromString(first.data)
            await self._record(conn.number, msg)
            if msg.WhichOneof("message") != "register":
                await ws.close()
                return ws
            self._conn = conn
            await ws.send_bytes(
                pb.ServerMessage(
                    register=pb.RegisterWorkerResponse(
                        worker_id=f"AW_test{conn.number}",
                        server_info=models.ServerInfo(region="test", version="1.9.0"),
                    )
                ).SerializeToString()
            )
            async with self._changed:
                self.connections = conn.number
                self._changed.notify_all()
            async for raw in ws:
                if raw.type != WSMsgType.BINARY:
                    continue
                msg = pb.WorkerMessage.FromString(raw.data)
                await self._record(conn.number, msg)
                if msg.WhichOneof("message") == "ping" and self.answer_pings:
                    pong = pb.WorkerPong(last_timestamp=msg.ping.timestamp, timestamp=1)
                    await ws.send_bytes(pb.ServerMessage(pong=pong).SerializeToString())
        finally:
            conn.closed.set()
            if self._conn is conn:
                self._conn = None
        return ws

    async def _record(self, conn: int, msg: pb.WorkerMessage) -> None:
        async with self._changed:
            self.received.append(Received(conn=conn, msg=msg))
            self._changed.notify_all()


def make_job(
    job_id: str,
    *,
    room: str = "room-1",
    job_type: pb.JobType = pb.JT_ROOM,
    participant: str | None = None,
    metadata: str = "",
    agent_name: str = "external-agent",
) -> pb.Job:
    job = pb.Job(
        id=job_id,
        dispatch_id=f"AD_{job_id}",
        type=job_type,
        room=models.Room(sid=f"RM_{room}", name=room),
        metadata=metadata,
        agent_name=agent_name,
    )
    if participant is not None:
        job.participant.CopyFrom(
            models.ParticipantInfo(sid=f"PA_{participant}", identity=participant)
        )
    return job
