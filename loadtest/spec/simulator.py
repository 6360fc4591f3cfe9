"""The simulator's settings, defined once: what a scenario's ``[simulator]`` table may say, which ``loadtest sim``
flag carries each setting to the simulator child, its default, and which ones size the endpoint.

Everything else is derived from :class:`SimSettings` and the metadata of its fields:

* :data:`SIM_KEYS` — the keys a ``[simulator]`` table accepts (:mod:`loadtest.spec.scenario`);
* :meth:`SimSettings.sim_args` — the ``loadtest sim`` flags :func:`loadtest.runner.launch.launch` passes;
* :data:`SIZING_KEYS` and :meth:`SimSettings.sizing` — what ``loadtest plan`` reads from a simulator run's manifest
  (``target.simulator``) to rebuild the band it ran on (:func:`analysis.measured.simulated_band`);
* :func:`default` — the defaults of :class:`loadtest.sim.config.SimConfig`'s fields of the same names.

``loadtest sim``'s click options are written out in :mod:`loadtest.cli.sim` (their order and help text are the
command's interface); a unit test holds them to this definition (same settings, flags and defaults).

A field is ``None`` when the scenario (or ``loadtest run``'s flags) did not give it: the simulator's default applies,
and the manifest records only what was given. Values are passed on as given; ``loadtest sim`` (the child) checks
them, as before. Pure: stdlib only, so ``loadtest.spec`` and ``analysis`` may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final

from loadtest.errors import ConfigError
from loadtest.model.serving import DEFAULT_MAX_BATCH

__all__ = [
    "SIM_KEYS",
    "SIZING_KEYS",
    "STALL_KEYS",
    "SimSettings",
    "default",
    "flag_of",
]


def _setting(default: Any, *, sizing: bool = False, flag: str | None = "") -> Any:
    """A setting's field: ``None`` (not given) in :class:`SimSettings`; ``default`` is the simulator's.
    ``flag=""``: ``--name-with-dashes``; ``None``: no value flag of its own (see :meth:`SimSettings.sim_args`)."""
    return field(default=None, metadata={"default": default, "sizing": sizing, "flag": flag})


@dataclass(frozen=True, slots=True)
class SimSettings:
    """What a scenario asks of the embedded simulator (see the module docstring). Field order is the order of the
    ``loadtest sim`` flags and of the description ``loadtest run`` prints."""

    architecture: str | None = _setting("llama-3.1-8b", sizing=True)
    gpu: str | None = _setting("h100", sizing=True)
    replicas: int | None = _setting(1, sizing=True)
    max_batch: int | None = _setting(DEFAULT_MAX_BATCH, sizing=True)
    tp: int | None = _setting(0, sizing=True)
    jitter_cv: float | None = _setting(0.0)
    # every step takes this factor longer (1.2: a server 20 % slower per token); a test and demo knob, not sizing
    slowdown: float | None = _setting(1.0)
    # the fixed-slots model instead of continuous batching (an M/D/c server, docs/simulator.md): at most `slots`
    # requests at once from one FIFO queue, each `prefill_ms` to its first token and `tpot_ms` per further token
    slots: int | None = _setting(None)
    prefill_ms: float | None = _setting(None)
    tpot_ms: float | None = _setting(None)
    # how the simulator counts prompt tokens (loadtest.sim.tokens): this many tokens per word, and this many more
    # for a chat request's template — a server whose tokenizer and chat template disagree with one word per token
    tokens_per_word: float | None = _setting(1.0)
    template_tokens: int | None = _setting(0)
    # tokens each replica's prefix cache holds (loadtest.sim.prefix; docs/simulator.md "Prefix cache"): None, the
    # replica's whole KV cache (vLLM's automatic prefix caching, on by default); 0 switches it off
    prefix_cache_tokens: int | None = _setting(None)
    mode: str | None = _setting("pt", sizing=True)
    itpm: int | None = _setting(None)
    otpm: int | None = _setting(None)
    qph: int | None = _setting(None)
    qps: int | None = _setting(None)
    chunks: int | None = _setting(None, sizing=True)
    chunk_size: int | None = _setting(None, sizing=True)
    min_provisioned_throughput: int | None = _setting(None, sizing=True)
    max_provisioned_throughput: int | None = _setting(None, sizing=True)
    # scale-to-zero and scale-out (loadtest.sim.scaling; Databricks' semantics and their sources: docs/cold-start.md):
    # a switch (--scale-to-zero); seconds without requests before scaling down (Databricks: 30 min); seconds from
    # zero to serving (Databricks: usually 10-20 s); what a request gets meanwhile (hold: waits, Databricks; 503:
    # refused with Retry-After); how long a held request waits before a 504 (Databricks' server-side timeout);
    # seconds per extra replica while requests wait (None: a fixed size)
    scale_to_zero: bool | None = _setting(False, flag=None)
    scale_down_after_s: float | None = _setting(1800.0)
    cold_start_s: float | None = _setting(15.0)
    cold_start_reply: str | None = _setting("hold")
    hold_timeout_s: float | None = _setting(597.0)
    scale_out_s: float | None = _setting(None)
    # behave like an external model that rejects stream_options (a switch: --reject-stream-options)
    reject_stream_options: bool | None = _setting(False, flag=None)
    # {http_503 = 0.05, stall = 0.01, stall_seconds = 2}: --fault NAME=PROB ... and --stall-seconds
    faults: Mapping[str, float] | None = _setting(None, flag=None)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> SimSettings:
        """From a ``[simulator]`` table (keys already checked against :data:`SIM_KEYS`)."""
        return cls(**dict(table))

    def given(self) -> dict[str, Any]:
        """The settings that were given, in field order (what a manifest's ``target.simulator`` records)."""
        return {name: value for name in SIM_KEYS if (value := getattr(self, name)) is not None}

    def merged(self, over: SimSettings) -> SimSettings:
        """These settings with every one given in ``over`` on top."""
        return replace(self, **over.given())

    def value(self, name: str) -> Any:
        """The setting's value, or the simulator's default when it was not given."""
        value = getattr(self, name)
        return default(name) if value is None else value

    def sizing(self) -> dict[str, Any]:
        """The given settings that size the endpoint (:data:`SIZING_KEYS`), to build a ``SimConfig`` from."""
        return {name: value for name, value in self.given().items() if name in SIZING_KEYS}

    def describe(self) -> str:
        """``architecture=llama-3.1-8b, gpu=h100, ...``: the given settings, as ``loadtest run`` prints them."""
        return ", ".join(f"{k}={v}" for k, v in self.given().items())

    def sim_args(self, seed: int) -> list[str]:
        """``loadtest sim`` flags for these settings: each value setting ``k`` becomes ``--k`` (underscores as
        dashes); ``faults = {http_503 = 0.05, stall = 0.01, stall_seconds = 2}`` becomes ``--fault http_503=0.05
        --fault stall=0.01 --stall-seconds 2``. ``loadtest sim`` validates the values."""
        args = ["--seed", str(seed)]
        for name, flag in _VALUE_FLAGS.items():
            value = getattr(self, name)
            if value is not None:
                args += [flag, str(value)]
        if self.reject_stream_options:
            args.append("--reject-stream-options")
        if self.scale_to_zero:
            args.append("--scale-to-zero")
        if self.faults is not None:
            if not isinstance(self.faults, Mapping):
                raise ConfigError(
                    "[simulator].faults must be a table such as {http_503 = 0.05, stall = 0.01}"
                )
            for name, value in self.faults.items():
                if name in STALL_KEYS:
                    args += ["--stall-seconds", str(value)]
                else:
                    args += ["--fault", f"{name}={value}"]
        return args


SIM_KEYS: Final[tuple[str, ...]] = tuple(f.name for f in fields(SimSettings))
SIZING_KEYS: Final[frozenset[str]] = frozenset(f.name for f in fields(SimSettings) if f.metadata["sizing"])
STALL_KEYS: Final[tuple[str, ...]] = ("stall_seconds", "stall_s")  # a faults table's stall length
_DEFAULTS: Final[dict[str, Any]] = {f.name: f.metadata["default"] for f in fields(SimSettings)}


def flag_of(name: str) -> str:
    """The ``loadtest sim`` flag of a setting: ``max_batch`` → ``--max-batch``."""
    return "--" + name.replace("_", "-")


_VALUE_FLAGS: Final[dict[str, str]] = {
    f.name: f.metadata["flag"] or flag_of(f.name)
    for f in fields(SimSettings)
    if f.metadata["flag"] is not None
}


def default(name: str) -> Any:
    """The simulator's default for a setting (``SimConfig``'s field of that name has it as its default)."""
    return _DEFAULTS[name]
