"""What to run: scenario files and flags → a validated run spec (request classes, stages, workloads,
length distributions, arrival processes). Pure: no network, no gevent."""

__all__: list[str] = []
