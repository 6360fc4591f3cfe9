"""Pure rules for splitting one run over several Locust worker processes (``--processes N``, ``--master``).

* Closed loop: a stage of ``U`` users gives worker ``k`` of ``W`` the share ``split_evenly(U, W)[k]``; every worker
  is spawned ``ceil(U_max / W)`` users, so any share fits.
* Open loop: the master draws the whole arrival schedule (one seeded process, so the aggregate is exactly the
  configured Poisson / gamma / constant process) and deals arrivals round-robin to workers, a little ahead of time;
  each worker starts them at their scheduled instant.
* Sequence numbers — which fix each request's content — are unique over the run whatever the number of workers:
  ``stage_index · 10⁸ + n`` for arrivals numbered by the master, ``stage_index · 10⁸ + k + 1 + W·n`` for closed-loop
  requests numbered by worker ``k``.
"""

from __future__ import annotations

__all__ = ["SEQ_STAGE_SPAN", "closed_loop_seq", "open_loop_seq", "split_evenly", "users_per_worker"]

SEQ_STAGE_SPAN = 100_000_000


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` integers differing by at most one, larger ones first."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def users_per_worker(max_users: int, workers: int) -> int:
    return -(-max_users // workers)


def closed_loop_seq(stage_index: int, worker_index: int, workers: int, n: int) -> int:
    """The ``n``-th (0-based) closed-loop request numbered by worker ``worker_index`` in stage ``stage_index``."""
    return stage_index * SEQ_STAGE_SPAN + worker_index + 1 + workers * n


def open_loop_seq(stage_index: int, n: int) -> int:
    """The ``n``-th (0-based) arrival of stage ``stage_index``."""
    return stage_index * SEQ_STAGE_SPAN + n + 1
