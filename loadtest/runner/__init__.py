"""One run from the CLI process: the run directory and its manifest, the engine and simulator child processes,
Ctrl-C. Never imports gevent (the engine runs in a child)."""

__all__: list[str] = []
