"""Retrieval-augmented generation, a shipped Python scenario (``loadtest run rag-flow``;
``docs/scenarios-python.md``).

One flow answers one question in three steps:

1. ``embed``: the question's embedding (a call to the endpoint under test);
2. retrieve: the :data:`K` passages of a synthetic corpus nearest to that vector — a stand-in for a vector store,
   computed here with no network: each passage has a fixed pseudo-random direction, and the passages whose
   directions score highest against the question's vector come back (with :data:`RETRIEVE_S` of simulated
   store latency). Not a call, so no record; its time is part of the flow's;
3. ``answer``: a chat call with the passages as context and the question.

Same question, same vector, same passages, so a run with the same seed sends the same prompts. Against a real
server both calls go to its base URL with its model; ``LOADTEST_EMBED_MODEL`` names another model for the
embeddings (a server or gateway that serves several).
"""

from __future__ import annotations

import hashlib
import os
import random
import time

from loadtest.flows import FlowUser, between, task

K = 4  # passages retrieved per question
CORPUS_SIZE = 200  # passages in the synthetic corpus
PASSAGE_WORDS = (60, 140)  # a passage's length in words
RETRIEVE_S = 0.02  # the simulated vector store's latency
ANSWER_TOKENS = (64, 192)  # the answer's max_tokens (exact on servers that honour ignore_eos)
PROJECTION_DIMS = 64  # the leading dimensions of the question's vector that retrieval scores
EMBED_MODEL = os.environ.get("LOADTEST_EMBED_MODEL")
SYSTEM = "Answer the question using only the numbered passages below. Cite passages as [n]."

_SUBJECTS = (
    "the billing service", "the ingestion pipeline", "the mobile app", "the search cluster", "the data warehouse",
    "the authentication proxy", "the model gateway", "the nightly batch", "the cache tier", "the message queue",
)  # fmt: skip
_FACTS = (
    "is owned by the platform team", "was migrated to the new region last quarter", "retries failed calls three times",
    "keeps seven days of logs", "scales out at 70 percent CPU", "pages the on-call engineer after five minutes",
    "reads its configuration at start-up", "writes an audit record for every change", "is tested nightly under load",
    "depends on the shared database", "has a documented recovery runbook", "drops requests above its quota",
)  # fmt: skip
_QUESTIONS = ("Who owns", "How does", "What happens when", "Where are the logs of", "How is", "Why did")


def _passage(i: int) -> str:
    rng = random.Random(f"passage/{i}")
    length = rng.randint(*PASSAGE_WORDS)
    sentences: list[str] = []
    while sum(len(s.split()) for s in sentences) < length:
        sentences.append(f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_FACTS)}.")
    return " ".join(sentences)


def _direction(i: int) -> list[float]:
    rng = random.Random(f"direction/{i}")
    return [rng.gauss(0.0, 1.0) for _ in range(PROJECTION_DIMS)]


CORPUS = [_passage(i) for i in range(CORPUS_SIZE)]
_DIRECTIONS = [_direction(i) for i in range(CORPUS_SIZE)]


def retrieve(vector: list[float] | None, question: str, k: int = K) -> list[int]:
    """The ``k`` passages (indexes into :data:`CORPUS`) nearest the question: highest dot product of the vector's
    leading :data:`PROJECTION_DIMS` dimensions with each passage's direction; without a vector, ``k`` drawn from
    the question's hash."""
    if not vector:
        seed = hashlib.blake2b(question.encode(), digest_size=8).hexdigest()
        return random.Random(seed).sample(range(len(CORPUS)), k)
    head = vector[:PROJECTION_DIMS]
    scores = [sum(q * d for q, d in zip(head, direction, strict=False)) for direction in _DIRECTIONS]
    return sorted(range(len(CORPUS)), key=lambda i: -scores[i])[:k]


class RagUser(FlowUser):
    wait_time = between(0.5, 2)  # between one question and the user's next (closed loop)

    @task
    def ask(self) -> None:
        rng = self.random
        question = f"{rng.choice(_QUESTIONS)} {rng.choice(_SUBJECTS)} handle {rng.choice(_SUBJECTS)}?"
        extra = {"model": EMBED_MODEL} if EMBED_MODEL else {}
        found = self.embed(question, name="embed", **extra)
        passages = retrieve(found.vectors[0] if found.vectors else None, question)
        time.sleep(RETRIEVE_S)  # the engine made time.sleep yield to the other users
        context = "\n\n".join(f"[{n}] {CORPUS[i]}" for n, i in enumerate(passages, 1))
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{context}\n\nQuestion: {question}"},
        ]
        self.chat(messages, max_tokens=rng.randint(*ANSWER_TOKENS), name="answer")
