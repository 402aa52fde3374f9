"""structlog set-up: JSON lines (or console) with context fields such as ``job_id``, ``room`` and
``dispatch_id`` bound through ``structlog.contextvars``.

Every line the process writes goes through the same renderer: structlog's own, the standard
library's (uvicorn, asyncio, livekit, onnxruntime's Python side) through
:class:`structlog.stdlib.ProcessorFormatter`, and Python warnings through ``logging``.
onnxruntime's native logger writes to stderr by itself; it is held to errors
(``agents.providers.onnx``), which the provider then reports in JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(*, level: str = "info", fmt: Literal["json", "console"] = "json") -> None:
    """Route structlog and the standard library's logging to stdout, one format for both."""
    numeric = _LEVELS.get(level, logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[structlog.types.Processor]
    if fmt == "json":
        renderer = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.captureWarnings(True)
