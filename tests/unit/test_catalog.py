"""Architecture and GPU names: checked in one place (``loadtest.model.catalog``), one wording when one is wrong."""

from __future__ import annotations

import pytest

from loadtest.errors import ConfigError
from loadtest.model.architectures import ARCHITECTURES
from loadtest.model.catalog import architecture, check_architecture, check_gpu, gpu, unknown_name
from loadtest.model.hardware import GPUS

KNOWN_ARCHITECTURES = ", ".join(sorted(ARCHITECTURES))  # the message lists them sorted


def test_known_names_are_returned_as_given() -> None:
    assert check_gpu("h100") == "h100"
    assert check_architecture("llama-3.1-8b", "--architecture") == "llama-3.1-8b"
    assert gpu("a100") is GPUS["a100"] and gpu("a100").name == "A100-80GB"
    assert architecture("mixtral-8x7b") is ARCHITECTURES["mixtral-8x7b"]


def test_a_typo_gets_the_closest_name() -> None:
    with pytest.raises(ConfigError) as gpu_err:
        check_gpu("h10", "--gpu")
    assert str(gpu_err.value) == "unknown GPU 'h10' for --gpu (did you mean 'h100'?); known: a100, h100"
    with pytest.raises(ConfigError) as arch_err:
        check_architecture("llama-3.1-8", "--architecture")
    assert str(arch_err.value) == (
        "unknown architecture 'llama-3.1-8' for --architecture (did you mean 'llama-3.1-8b'?); "
        f"known: {KNOWN_ARCHITECTURES}"
    )


def test_a_name_like_none_of_them_gets_only_the_list() -> None:
    with pytest.raises(ConfigError) as gpu_err:
        check_gpu("tpu")
    assert str(gpu_err.value) == "unknown GPU 'tpu'; known: a100, h100"
    with pytest.raises(ConfigError) as arch_err:
        architecture("gpt-9")
    assert str(arch_err.value) == f"unknown architecture 'gpt-9'; known: {KNOWN_ARCHITECTURES}"


def test_a_value_of_the_wrong_type_is_shown_as_written() -> None:
    # a TOML value that is not a string: its repr, no quotes added, and no suggestion
    with pytest.raises(ConfigError) as gpu_err:
        gpu(7, "the simulator")
    assert str(gpu_err.value) == "unknown GPU 7 for the simulator; known: a100, h100"
    with pytest.raises(ConfigError) as arch_err:
        check_architecture(None, "scenario.toml")
    assert str(arch_err.value) == f"unknown architecture None for scenario.toml; known: {KNOWN_ARCHITECTURES}"


def test_unknown_name_builds_the_error_for_any_kind() -> None:
    err = unknown_name("fault", "http_42", ["http_429", "http_500", "http_503"], "--fault")
    assert isinstance(err, ConfigError) and err.exit_code == 2  # returned for the caller to raise
    assert str(err) == (
        "unknown fault 'http_42' for --fault (did you mean 'http_429'?); known: http_429, http_500, http_503"
    )
    assert (
        str(unknown_name("mode", "x", ["ppt", "band"])) == "unknown mode 'x'; known: ppt, band"
    )  # order kept


def test_a_name_in_the_wrong_case_is_pointed_at_its_key() -> None:
    # difflib alone would say 'h100' for 'A100' (it breaks the tie by the larger string)
    with pytest.raises(ConfigError) as err:
        check_gpu("A100", "--gpu")
    assert str(err.value) == "unknown GPU 'A100' for --gpu (did you mean 'a100'?); known: a100, h100"
