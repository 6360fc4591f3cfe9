"""One exception tree for the whole tool, each class mapped to a process exit code.

::

    LoadtestError (1)            anything this tool reports as one line and a code
    ├── ConfigError (2)          bad scenario, option or input file; the user fixes the command
    ├── EndpointError (3)        the endpoint is unreachable or does not speak the OpenAI protocol
    ├── PortInUseError (3)       the simulator cannot bind its port
    ├── Infeasible (4)           ``loadtest plan``: no candidate can meet the SLOs at the forecast's mix
    ├── RunInvalid (98)          the run's numbers cannot be trusted or do not exist (no records, the generator
    │                            could not offer the load, its engine was saturated, too few samples for a gated
    │                            percentile): never a pass or a fail
    └── GateFailed (99)          ``loadtest gate``: a threshold or a regression limit failed (k6's convention)

Interrupted runs exit :data:`EXIT_INTERRUPTED` (130, the shell's code for SIGINT), the engine child too.
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = [
    "EXIT_INTERRUPTED",
    "ConfigError",
    "EndpointError",
    "GateFailed",
    "Infeasible",
    "LoadtestError",
    "PortInUseError",
    "RunInvalid",
]


EXIT_INTERRUPTED: Final[int] = 130


class LoadtestError(Exception):
    """Base of every error the tool reports to a user as one line."""

    exit_code: ClassVar[int] = 1


class ConfigError(LoadtestError):
    """A scenario, option or input that cannot be used as given."""

    exit_code: ClassVar[int] = 2


class EndpointError(LoadtestError):
    """The endpoint cannot be reached or does not answer like an OpenAI-compatible server."""

    exit_code: ClassVar[int] = 3


class PortInUseError(LoadtestError):
    """The simulator could not bind the requested port."""

    exit_code: ClassVar[int] = 3


class Infeasible(LoadtestError):
    """No architecture the plan considered can meet the SLOs (the table or JSON is still printed)."""

    exit_code: ClassVar[int] = 4


class RunInvalid(LoadtestError):
    """The run's numbers cannot be trusted (or there are none): a gate can neither pass nor fail it."""

    exit_code: ClassVar[int] = 98


class GateFailed(LoadtestError):
    """A valid run broke a gate's threshold or regression limit."""

    exit_code: ClassVar[int] = 99
