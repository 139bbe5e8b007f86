"""RunnerRef: the one place a forge runner reference is parsed and printed."""

from __future__ import annotations

import pytest

from providers.base import ForgeKind, RunnerRef


def test_an_id_and_a_name_only_reference_round_trip_through_their_text_form() -> None:
    for ref in (RunnerRef("42"), RunnerRef.by_name("ro-inst-1")):
        assert RunnerRef.parse(str(ref)) == ref
    assert str(RunnerRef.by_name("ro-inst-1")) == "name:ro-inst-1"
    assert RunnerRef.of("7") == RunnerRef("7")
    ref = RunnerRef("9")
    assert RunnerRef.of(ref) is ref


def test_a_reference_without_id_or_name_is_refused() -> None:
    with pytest.raises(ValueError):
        RunnerRef()
    with pytest.raises(ValueError):
        RunnerRef(forge_id="", name="x")


def test_forge_kind_is_the_same_enum_the_orchestrator_uses() -> None:
    from orchestrator.models import ForgeKind as ModelsForgeKind

    assert ModelsForgeKind is ForgeKind
    assert ForgeKind("gitlab") == "gitlab"
