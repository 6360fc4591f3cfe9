"""The load engine: the Locust process that sends the load (``python -m loadtest.engine``).

The modules that import locust / gevent are the engine's door and run only in that child process:
:mod:`loadtest.engine.roles` (and ``__main__``). The rest of this package is pure and importable anywhere:
:mod:`~loadtest.engine.conduct` (stage sequencing and the record sink), :mod:`~loadtest.engine.distribute`
(splitting a run over workers), :mod:`~loadtest.engine.sweep` (the automatic sweep's rules) and
:mod:`~loadtest.engine.procstat`.
"""

__all__: list[str] = []
