"""EmbeddedVisionLLM: reads rendered text, names colours, and never pretends to recognise."""

from __future__ import annotations

import pytest
from vision_fakes import BLACK, BLUE, RED, frame, image, metrics, text_image

from agents.providers.base import ChatMessage, ChatRequest, ImagePart, TextDelta
from agents.providers.embedded_vision import CAPABILITIES, EmbeddedVisionLLM
from agents.providers.errors import ProviderError
from agents.vision.config import VisionConfig
from agents.vision.frames import FrameStore


@pytest.fixture(scope="module")
def llm() -> EmbeddedVisionLLM:
    return EmbeddedVisionLLM()


async def sampled(rgb: object, source: str = "camera") -> ImagePart:
    """The image a voice turn would attach: a real VideoFrame through the FrameStore."""
    async with FrameStore(config=VisionConfig(), metrics=metrics()) as fs:
        fs.push_video("alice", source, frame(rgb))  # type: ignore[arg-type]
        await fs.drain()
        [part] = fs.latest_images("alice")
        return part


async def ask(llm: EmbeddedVisionLLM, question: str, *images: ImagePart) -> str:
    request = ChatRequest(messages=[
        ChatMessage(role="system", content="You are helpful."),
        ChatMessage(role="user", content=question, images=tuple(images)),
    ])
    return "".join([e.text async for e in llm.chat(request) if isinstance(e, TextDelta)])


async def test_reads_rendered_text_from_a_video_frame(llm: EmbeddedVisionLLM) -> None:
    part = await sampled(text_image("OPEN LATE"))
    answer = await ask(llm, "What does the sign say?", part)
    assert "OPEN LATE" in answer.upper()
    assert CAPABILITIES not in answer


async def test_says_it_cannot_recognise_objects_when_asked(llm: EmbeddedVisionLLM) -> None:
    part = await sampled(image(RED))
    answer = await ask(llm, "What am I holding?", part)
    assert answer.startswith(CAPABILITIES)
    assert "red" in answer
    again = await ask(llm, "What do you see?", part)
    assert CAPABILITIES in again


async def test_describes_brightness_and_colours(llm: EmbeddedVisionLLM) -> None:
    dark = await sampled(image(BLACK))
    answer = await ask(llm, "Describe the picture.", dark)
    assert "very dark" in answer and "black" in answer
    half = image(BLUE)
    half[:, :640] = (250, 250, 250)
    answer = await ask(llm, "Describe the picture.", await sampled(half))
    assert "blue" in answer and "white" in answer


async def test_reports_motion_against_the_previous_image() -> None:
    llm = EmbeddedVisionLLM(ocr=False)
    await ask(llm, "Describe it.", await sampled(image(BLACK)))
    answer = await ask(llm, "Describe it.", await sampled(image((250, 250, 250))))
    assert "changed a lot" in answer


async def test_without_an_image_it_says_so_and_what_it_can_do(llm: EmbeddedVisionLLM) -> None:
    answer = await ask(llm, "Hello there")
    assert "don't have a camera or screen image" in answer and CAPABILITIES in answer


async def test_undecodable_image_is_a_clear_non_retryable_error(llm: EmbeddedVisionLLM) -> None:
    bad = ImagePart(jpeg=b"not a jpeg", width=1, height=1)
    with pytest.raises(ProviderError, match="cannot be decoded") as err:
        await ask(llm, "Describe it.", bad)
    assert not err.value.retryable
