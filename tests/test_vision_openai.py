"""The vision pipeline against an OpenAI-compatible server: the frame goes out as a data URL."""

from __future__ import annotations

import base64

from openai_server import finish, running_server, text_delta
from vision_fakes import RED, FakeClock, FakeSpeech, RecordingMessages, frame, image, metrics

from agents.messages import VisionDescription
from agents.providers.openai_llm import OpenAILLM
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore
from agents.vision.pipeline import VisionPipeline


async def test_vision_pipeline_sends_the_sampled_jpeg_as_a_data_url() -> None:
    async with running_server() as server:
        server.chat_chunks = [text_delta("A red screen.", role=True), finish()]
        llm = OpenAILLM(name="vision", model="gpt-4o-mini", api_key="sk-test",
                        base_url=server.base_url, vision=True)
        clock = FakeClock()
        cfg = VisionConfig(max_side=256)
        m = metrics()
        messages, speech = RecordingMessages(), FakeSpeech()
        async with FrameStore(config=cfg, clock=clock, metrics=m) as frames:
            pipeline = VisionPipeline(frames=frames, llm=llm, messages=messages, config=cfg,
                                      speech=speech, clock=clock, metrics=m)
            frames.push_video("alice", "screen_share", frame(image(RED, 1280, 720)))
            await frames.drain()
            sample = frames.latest("alice", "screen_share")
            assert await pipeline.check_once() == "described"
        await llm.aclose()

    [req] = server.requests_to("/v1/chat/completions")
    assert req.json is not None
    assert req.json["max_tokens"] == cfg.max_tokens
    system, user = req.json["messages"]
    assert system == {"role": "system", "content": cfg.describe_prompt}
    [text_part, image_part] = user["content"]
    assert text_part["type"] == "text" and "screen share" in text_part["text"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert sample is not None
    assert base64.b64decode(url.split(",", 1)[1]) == sample.image.jpeg
    [desc] = [m for m in messages.sent if isinstance(m, VisionDescription)]
    assert desc.data.description == "A red screen."
    assert desc.data.track_source == "screen_share"
    assert speech.said == [("A red screen.", "vision")]
