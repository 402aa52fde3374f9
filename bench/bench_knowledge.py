"""Approved-knowledge retrieval per turn over 10,000 passages on one core.

What a turn pays before the model call: embed the final transcript (all-MiniLM-L6-v2 int8 on
onnxruntime, one thread) and search the collection's usearch HNSW index (one thread). The
process is pinned to one CPU. Baseline, measured in the same run: the same embedding followed by
an exact brute-force search in numpy (one matrix-vector product over all 10,000 vectors, then
the top k), the obvious way without an index.

The collection: 100 passages embedded for real from generated store-policy sentences, the
other 9,900 vectors random unit vectors (embedding 10,000 real passages takes minutes on one
core; search cost depends on the count and dimension, and random vectors are the hardest case
for an HNSW graph). Recall of the index against the exact answer is printed too.

Run: ``.venv/bin/python bench/bench_knowledge.py [turns]``. Last line is the headline.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # numpy's BLAS on one core, like everything else here

import logging  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import structlog  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from percentiles import nearest_rank as pct  # noqa: E402

from agents.knowledge import KnowledgeBase, KnowledgeConfig  # noqa: E402
from agents.knowledge.embedder import Embedder  # noqa: E402
from agents.knowledge.index import CollectionIndex, new_index  # noqa: E402
from agents.knowledge.passages import Passage  # noqa: E402

TARGET_MS = 20.0
PASSAGES = 10_000
REAL = 100
TOPICS = ["returns", "refunds", "shipping", "opening hours", "warranty", "gift cards",
          "loyalty points", "repairs", "price matching", "deliveries"]
QUESTIONS = [
    "How long do I have to return a jacket I bought last week?",
    "Do you ship to Canada and how much does it cost?",
    "When does the store open on Saturday?",
    "Can I get my money back on a gift card?",
    "Is the warranty still valid if I dropped my phone?",
    "How many loyalty points do I get for fifty dollars?",
    "Will you match a cheaper price from another shop?",
    "My delivery did not arrive, what can I do?",
]


def collection(embedder: Embedder) -> tuple[list[Passage], np.ndarray]:
    rng = np.random.default_rng(7)
    texts = [
        f"Policy {i} on {TOPICS[i % len(TOPICS)]}: customers may ask within {7 + i % 60} days; "
        f"bring the receipt, order number {1000 + i} and photo ID to any store."
        for i in range(REAL)
    ]
    real = embedder.embed(texts, batch=32)
    fake = rng.standard_normal((PASSAGES - REAL, real.shape[1])).astype(np.float32)
    fake /= np.linalg.norm(fake, axis=1, keepdims=True)
    vectors = np.concatenate([real, fake])
    passages = [Passage(source=f"policy-{i}.md", text=t) for i, t in enumerate(texts)]
    passages += [Passage(source=f"filler-{i}.md", text="filler") for i in range(len(fake))]
    return passages, vectors


def main(turns: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    embedder = Embedder(threads=1)
    started = time.perf_counter()
    passages, vectors = collection(embedder)
    index = new_index(vectors)
    print(f"collection: {len(passages)} passages ({REAL} embedded), index built in "
          f"{time.perf_counter() - started:.1f} s")
    config = KnowledgeConfig.model_validate({"collections": {"bench": {"path": "/nonexistent"}},
                                             "top_k": 3, "min_score": -1.0})
    base = KnowledgeBase(config=config, embedder=embedder)
    base._indexes["bench"] = CollectionIndex(name="bench", signature="", passages=passages,
                                             index=index)
    for q in QUESTIONS:  # warm-up
        base.retrieve_sync(q, ["bench"])

    ours: list[float] = []
    ours_cpu: list[float] = []
    search_only: list[float] = []
    brute: list[float] = []
    brute_search: list[float] = []
    agree = 0
    for i in range(turns):
        question = f"{QUESTIONS[i % len(QUESTIONS)]} (turn {i})"
        t0, c0 = time.perf_counter(), time.thread_time()
        found = base.retrieve_sync(question, ["bench"])
        ours.append((time.perf_counter() - t0) * 1000)
        ours_cpu.append((time.thread_time() - c0) * 1000)

        t0 = time.perf_counter()
        q = embedder.embed_one(question)
        t1 = time.perf_counter()
        scores = vectors @ q
        top = np.argpartition(-scores, 3)[:3]
        top = top[np.argsort(-scores[top])]
        t2 = time.perf_counter()
        brute.append((t2 - t0) * 1000)
        brute_search.append((t2 - t1) * 1000)

        t0 = time.perf_counter()
        index.search(q, count=3, threads=1)
        search_only.append((time.perf_counter() - t0) * 1000)
        agree += found.hits[0].source == passages[int(top[0])].source

    p50, p95 = statistics.median(ours), pct(ours, 0.95)
    b50, b95 = statistics.median(brute), pct(brute, 0.95)
    s50, bs50 = statistics.median(search_only), statistics.median(brute_search)
    print(f"baseline (embed + brute-force numpy): p50 {b50:.2f} ms  p95 {b95:.2f} ms")
    print(f"retrieval (embed + usearch HNSW):     p50 {p50:.2f} ms  p95 {p95:.2f} ms "
          f"(n={turns})")
    print(f"search alone: usearch {s50:.3f} ms vs numpy {bs50:.3f} ms (x{bs50 / s50:.1f}); "
          f"top-1 agrees with the exact search in {agree}/{turns} turns")
    c50, c95 = statistics.median(ours_cpu), pct(ours_cpu, 0.95)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"retrieval CPU time (this thread): p50 {c50:.2f} ms  p95 {c95:.2f} ms; "
          f"load average {load:.1f} (wall time includes waiting for the shared core)")
    print(f"ratio to baseline (p50): {p50 / b50:.2f}")
    print(f"knowledge_retrieval: wall p50 {p50:.2f} ms, p95 {p95:.2f} ms; CPU p95 {c95:.2f} ms "
          f"per turn, 10,000 passages, one core (target < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
