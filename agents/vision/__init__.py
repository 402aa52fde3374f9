"""Video frames into the conversation: sampling (:mod:`.frames`), change detection
(:mod:`.change`), and the standalone vision pipeline (:mod:`.pipeline`). Most modules need the
``vision`` extra (opencv-python-headless); :mod:`.config`, :mod:`.stream` and :mod:`.metrics` do
not, which is why this package imports nothing itself (``agents.pipeline.config`` and the LiveKit
transport use those three on an install without the extra)."""
