"""Which of this engine process's requests become samples (``samples.jsonl``, :mod:`loadtest.rundir.samples`). Pure:
no gevent here.

Collecting a response's text costs decoding every stream chunk, which the load path otherwise skips, so only a
class's first few requests do it: a request is collected while the class's successful samples taken so far plus
those being collected are fewer than :data:`~loadtest.rundir.samples.KEEP_OK` (a collected request that fails
frees its place for the next one). Every other request runs with a :class:`~loadtest.client.execute.Capture` that
keeps only an error response's body, which is read anyway. When a record is emitted, :meth:`Sampler.finish` decides
whether it is a sample and, if so, builds what its wire line carries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from loadtest.client.execute import Capture
from loadtest.client.protocol import PreparedRequest
from loadtest.client.records import RequestRecord
from loadtest.rundir.samples import KEEP_OK, SampleQuota, sample_extras

__all__ = ["Sampler"]


class Sampler:
    """One engine process's choice of samples; the run directory's writer keeps the first that arrive
    (:class:`~loadtest.rundir.samples.SampleWriter`)."""

    def __init__(self) -> None:
        self.quota = SampleQuota()
        self.collecting: dict[str, int] = {}

    def capture(self, request_class: str) -> Capture:
        """The capture to send a request of ``request_class`` with: collecting its text, or only an error body."""
        collecting = self.collecting.get(request_class, 0)
        if collecting + self.quota.ok_taken(request_class) < KEEP_OK:
            self.collecting[request_class] = collecting + 1
            return Capture(content=[])
        return Capture()

    def finish(
        self,
        record: RequestRecord,
        request: PreparedRequest,
        capture: Capture,
        secrets: Callable[[], Iterable[str]],
    ) -> dict[str, Any] | None:
        """The sample to send with ``record`` (:func:`~loadtest.rundir.samples.sample_extras`), or None. Called once
        per request, cancelled ones included. ``secrets`` gives the run's credential values (only called for a
        sample)."""
        cls = record.request_class
        if capture.content is not None:
            self.collecting[cls] -= 1
        if record.ok and capture.content is None:  # a success whose text was not collected is no sample
            return None
        if not self.quota.take(cls, record.error_class):
            return None
        return sample_extras(request, capture, secrets())
