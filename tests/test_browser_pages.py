"""The playground and the console in headless Chromium, against a real livekit-server and the
real service (``external-agent serve``, embedded speech stack): a person starts a call, speaks
(a WAV rendered with espeak-ng is the microphone), sees the transcript and the todo list change,
types and sees the answer, leaves; an operator sees the job live in the console and its record
after. Then the error states: microphone refused, service busy, room connection lost.

Screenshots go to ``docs/img/`` (the README shows them)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from browser_kit import SCREENSHOTS, chromium, write_microphone_wav
from livekit_env import LiveKitServer, running_service

pytestmark = [pytest.mark.livekit, pytest.mark.embedded, pytest.mark.timeout(240)]

ADMIN = "admin-token-0123456789abcdef"
PLAYGROUND = "playground-token-0123456789abcdef"
SECRET = "test-webhook-secret-0123456789abcdef"
TODO = [
    {"id": "name", "description": "the caller's full name", "required": True},
    {"id": "issue", "description": "what the call is about", "required": True},
    {"id": "callback", "description": "a phone number to call back", "required": True},
]
GREETING = "Hello! I'm the intake assistant. How can I help you today?"
WAIT = 60_000  # ms, for Playwright's expectations: speech turns on a shared 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(server: LiveKitServer, workdir: Path, **extra: Any) -> dict[str, Any]:
    """Production mode (no dev_mode): the playground is opened by its token."""
    config: dict[str, Any] = {
        "webhook_secrets": [SECRET],
        "admin_token": ADMIN,
        "livekit_url": server.url,
        "livekit_api_key": server.api_key,
        "livekit_api_secret": server.api_secret,
        "worker": {"enabled": False},
        "playground": {"token": PLAYGROUND},
        "log_level": "info",
        "agent": {
            "artifacts_dir": str(workdir / "jobs"),
            "persona": {"greeting": GREETING, "todo_items": TODO},
        },
    }
    config.update(extra)
    return config


async def _start_call(page: Any, base: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{base}/playground")
    token = page.get_by_label("Playground token")
    await expect(token).to_be_visible()
    await token.fill(PLAYGROUND)
    await page.get_by_role("button", name="Start call").click()


async def _sign_in(page: Any, base: str) -> None:
    from playwright.async_api import expect

    await page.goto(f"{base}/console")
    await page.get_by_label("Admin token").fill(ADMIN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#live")).to_be_visible()


async def test_a_call_in_the_playground_watched_from_the_console(
    live_server: LiveKitServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    mic = write_microphone_wav(tmp_path / "caller.wav", [
        (4.5, "Hello, I need some help with an order."),
        (6.0, "My name is Alice Johnson."),
    ])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_service(workdir=tmp_path, config=_config(live_server, tmp_path), env={},
                               port=port), \
            chromium(tmp_path / "profile", microphone=mic) as browser:
        page = await browser.new_page()
        await _start_call(page, base)
        await expect(page.locator("#call-state")).to_have_text("connected", timeout=30_000)
        await expect(page.get_by_role("button", name="Leave")).to_be_enabled()
        await expect(page.get_by_role("button", name="Microphone")).to_have_attribute(
            "aria-pressed", "true")
        job_text = await page.locator("#job").text_content()
        assert job_text is not None and job_text.startswith("job PG_")
        job_id = job_text.split()[1].rstrip(",")

        # The microphone is live: the level meter moves while the WAV speaks.
        await page.wait_for_function(
            "document.getElementById('mic-level').value > 0.02", timeout=WAIT)

        # The agent greets; the todo list arrives; the caller speaks and is transcribed.
        transcript = page.get_by_label("Transcript", exact=True)
        await expect(transcript.locator("li.agent").first).to_contain_text("intake assistant",
                                                                           timeout=WAIT)
        todo = page.get_by_label("Todo list", exact=True)
        await expect(todo.locator("li")).to_have_count(3, timeout=WAIT)
        await expect(todo.locator('li[data-id="name"]')).to_have_attribute(
            "data-status", "completed", timeout=WAIT)
        await expect(transcript.locator('li.user.final[data-speaker="You"]').first).to_be_visible()
        await expect(todo.locator('li[data-id="issue"]')).to_have_attribute(
            "data-status", "in_progress")

        # The console, while the call runs: the job live, followed.
        console = await browser.new_page()
        await _sign_in(console, base)
        row = console.locator(f'#live-jobs tr[data-job="{job_id}"]')
        await expect(row).to_contain_text("playground")
        await expect(row).to_contain_text("running")
        await console.get_by_role("button", name=f"Follow job {job_id}").click()
        followed = console.get_by_label("Job transcript")
        await expect(followed).to_contain_text("intake assistant", timeout=WAIT)
        await expect(console.get_by_label("Job todo list").locator(
            'li[data-id="name"]')).to_have_attribute("data-status", "completed", timeout=WAIT)

        # Typed turns: the answer shows, the todo list moves on, the agent confirms.
        await expect(transcript.locator("li.agent.final").last).to_contain_text(
            "what the call is about", timeout=WAIT)
        message = page.get_by_label("Message")
        await message.fill("The package arrived damaged.")
        await page.get_by_role("button", name="Send").click()
        await expect(todo.locator('li[data-id="issue"]')).to_have_attribute(
            "data-status", "completed", timeout=WAIT)
        await expect(transcript.locator("li.agent.final").last).to_contain_text(
            "phone number", timeout=WAIT)
        typed = transcript.locator("li.user", has_text="The package arrived damaged.")
        await expect(typed).to_have_count(1)  # shown once, not again when the agent echoes it
        await expect(followed).to_contain_text("The package arrived damaged.", timeout=WAIT)
        await console.screenshot(path=str(SCREENSHOTS / "console.png"), full_page=True)
        await message.fill("You can reach me on 555-1234.")
        await page.get_by_role("button", name="Send").click()
        await expect(transcript.locator("li.agent.final").last).to_contain_text(
            "555-1234", timeout=WAIT)
        await expect(todo.locator('li[data-status="completed"]')).to_have_count(3)
        await expect(page.locator("#latency-summary")).to_contain_text("turn(s)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "playground.png"), full_page=True)

        # The agent ended the call (end_call); the person leaves.
        await page.get_by_role("button", name="Leave").click()
        await expect(page.locator("#call-state")).to_have_text("ended", timeout=15_000)
        await expect(page.locator("#error")).to_be_hidden()

        # The console after: the finished job, its record, the download.
        finished = console.locator(f'#finished-jobs tr[data-job="{job_id}"]')
        await expect(finished).to_contain_text("completed", timeout=30_000)
        await expect(finished).to_contain_text("conversation_ended:call_ended")
        await console.get_by_role("button", name=f"Show the record of job {job_id}").click()
        await expect(console.locator("#follow-reason")).to_contain_text("call_ended")
        await expect(followed).to_contain_text("(typed)")
        await console.screenshot(path=str(SCREENSHOTS / "console-record.png"), full_page=True)
        async with console.expect_download() as download_info:
            await console.get_by_role(
                "button", name=f"Download the record of job {job_id}").click()
        download = await download_info.value
        saved = tmp_path / "record.json"
        await download.save_as(str(saved))
        record = json.loads(saved.read_text())
        assert record["job_id"] == job_id
        notes = {i["id"]: i["status"] for i in record["todo_list"]}
        assert notes == {"name": "completed", "issue": "completed", "callback": "completed"}
        spoken = [e["text"] for e in record["transcript"] if e["role"] == "user"
                  and e["source"] == "speech"]
        assert spoken, "the caller's speech was transcribed"


async def test_error_states_microphone_refused_busy_and_connection_lost(
    live_server: LiveKitServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    config = _config(live_server, tmp_path, max_jobs=1, retry_after=9)
    async with running_service(workdir=tmp_path, config=config, env={}, port=port), \
            chromium(tmp_path / "denied", allow_microphone=False) as denied, \
            chromium(tmp_path / "second") as second:
        # Microphone refused: said plainly; the call goes on for typed messages. The persona's
        # greeting is set in the page before the call.
        page = await denied.new_page()
        await page.goto(f"{base}/playground")
        await page.get_by_label("Playground token").fill(PLAYGROUND)
        await page.get_by_text("Persona for the next call").click()
        await page.get_by_label("Greeting").fill("Welcome to the playground test.")
        await page.get_by_role("button", name="Start call").click()
        error = page.get_by_role("alert").filter(has_text="Microphone refused")
        await expect(error).to_be_visible(timeout=30_000)
        await expect(page.locator("#call-state")).to_have_text("connected", timeout=30_000)
        await expect(page.get_by_label("Message")).to_be_enabled()
        await expect(page.get_by_role("button", name="Microphone")).to_have_attribute(
            "aria-pressed", "false")

        # Service busy: the only slot is taken by that call.
        await expect(page.get_by_label("Todo list", exact=True).locator("li")).to_have_count(
            3, timeout=WAIT)
        other = await second.new_page()
        await _start_call(other, base)
        busy = other.get_by_role("alert")
        await expect(busy).to_contain_text("The service is busy", timeout=30_000)
        await expect(busy).to_contain_text("9 s")
        await expect(other.get_by_role("button", name="Start call")).to_be_enabled()

        # A typed request for a person: a handoff, queued in the console until handled; the
        # agent says its handoff line and leaves the call to the person.
        # (typed once the greeting is over: a message sent in the first second or two can reach
        # the agent before it has seen the caller join, and is dropped as from nobody it serves)
        await expect(page.get_by_label("Transcript", exact=True).locator("li.agent.final").first
                     ).to_contain_text("Welcome to the playground test.", timeout=WAIT)
        await page.get_by_label("Message").fill("Can I speak to a human please?")
        await page.get_by_role("button", name="Send").click()
        notice = page.get_by_role("alert").filter(has_text="handed this call to a person")
        await expect(notice).to_be_visible(timeout=WAIT)
        console = await second.new_page()
        await _sign_in(console, base)
        queue = console.locator("#handoff-rows tr")
        await expect(queue).to_have_count(1)
        await expect(queue).to_contain_text("asked to speak with a person")
        await expect(console.locator("#handoffs-heading")).to_have_text("Handoff queue (1 waiting)")
        job_id = (await queue.locator("td").first.text_content() or "").strip()
        await console.get_by_role(
            "button", name=f"Mark the handoff of job {job_id} handled").click()
        await expect(console.locator("#handoffs-heading")).to_have_text("Handoff queue (0 waiting)")
        await expect(queue).to_contain_text("handled")
        await expect(console.locator(f'#finished-jobs tr[data-job="{job_id}"]')).to_contain_text(
            "conversation_ended:handoff", timeout=30_000)
        await expect(page.locator("#agent-status")).to_have_text("left the call", timeout=30_000)

        # The slot is free again: the other caller gets an agent; an operator cancels that call
        # from the console and the agent leaves the caller's room.
        await other.get_by_role("button", name="Start call").click()
        await expect(other.locator("#call-state")).to_have_text("connected", timeout=30_000)
        await expect(other.get_by_label("Todo list", exact=True).locator("li")).to_have_count(
            3, timeout=WAIT)  # the agent is in the call
        rows = console.locator("#live-jobs tr[data-job]")
        await expect(rows).to_have_count(1, timeout=30_000)
        job_id = await rows.first.get_attribute("data-job") or ""
        await console.get_by_role("button", name=f"Cancel job {job_id}").click()
        await expect(console.locator(f'#finished-jobs tr[data-job="{job_id}"]')).to_contain_text(
            "cancelled by operator", timeout=30_000)
        await expect(other.locator("#agent-status")).to_have_text("left the call", timeout=30_000)
        page = other

        # Connection lost: the room disappears under the call.
        room = (await page.locator("#job").text_content() or "").split("room ")[-1]
        lk = live_server.api()
        try:
            from livekit import api

            await lk.room.delete_room(api.DeleteRoomRequest(room=room))
        finally:
            await lk.aclose()
        lost = page.get_by_role("alert").filter(has_text="Connection to the room lost")
        await expect(lost).to_be_visible(timeout=30_000)
        await expect(page.locator("#call-state")).to_have_text("connection lost")
        await expect(page.get_by_role("button", name="Start call")).to_be_enabled()
