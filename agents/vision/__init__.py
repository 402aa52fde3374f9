"""Video frames into the conversation: sampling (:mod:`.frames`), change detection
(:mod:`.change`), and the standalone vision pipeline (:mod:`.pipeline`). Needs the ``vision``
extra (opencv-python-headless)."""

from agents.vision.config import VisionConfig
from agents.vision.conversation import WatchingConversation
from agents.vision.frames import FrameStore, Sample
from agents.vision.pipeline import SpeechOutput, VisionPipeline, VisionTurn

__all__ = [
    "FrameStore", "Sample", "SpeechOutput", "VisionConfig", "VisionPipeline", "VisionTurn",
    "WatchingConversation",
]
