"""The performance model shared by the simulator and the planner: GPU profiles, the architecture catalog, roofline
step times, the batching parameters and closed-loop predictions, pay-per-token quotas. Pure stdlib."""

__all__: list[str] = []
