"""The performance model shared by the simulator and the planner. Pure stdlib; imports nothing above it.

:mod:`~loadtest.model.hardware` (GPU profiles, TP efficiency, bytes per value), :mod:`~loadtest.model.architectures`
(the architecture catalog), :mod:`~loadtest.model.catalog` (the one place those names are checked),
:mod:`~loadtest.model.roofline` (a deployment's decode / prefill step times and KV capacity),
:mod:`~loadtest.model.serving` (the batching parameters), :mod:`~loadtest.model.predict` (closed-loop predictions),
:mod:`~loadtest.model.quota` (pay-per-token quotas).
"""

__all__: list[str] = []
