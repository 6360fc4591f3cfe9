"""The load engine: the Locust process that sends the load (``python -m loadtest.engine``).

The modules that import locust / gevent are the engine's door and run only in that child process, each named for
its role: :mod:`~loadtest.engine.roles` (local / master / worker roles, their conductors and messages, ``main``;
it monkey-patches the process first thing), :mod:`~loadtest.engine.users` (stage gate, the per-process engine,
the Locust user) and :mod:`~loadtest.engine.gevent_transport` (the HTTP/1.1 transport). The rest of this
package is pure and importable anywhere: :mod:`~loadtest.engine.conduct` (stage sequencing and the record sink),
:mod:`~loadtest.engine.distribute` (splitting a run over workers), :mod:`~loadtest.engine.sweep` (the automatic
sweep's rules), :mod:`~loadtest.engine.health` (back-off and the dead-endpoint watch) and
:mod:`~loadtest.engine.procstat`.
"""

__all__: list[str] = []
