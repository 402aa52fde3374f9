"""The buffered voice pipeline (issue 4): turns, speech recognition, the model with its tools,
speech, barge-in, per-turn traces. See ``docs/pipeline.md``.

Import from the submodules (``agents.pipeline.config``, ``.factory``, ``.voice``, ...): the
package itself imports nothing, so ``agents.config`` can nest :class:`PipelineConfig` without an
import cycle.
"""
