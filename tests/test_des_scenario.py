"""Scenario files: the shipped ones load, and every kind of mistake is named with file, key and what is allowed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sim.des.population import Population, clone_pan
from sim.des.scenario import FAULT_KINDS, ScenarioError, list_scenarios, load_scenario, parse_scenario
from sim.core.cards import luhn_valid

SHIPPED = ("default", "acquirer-outage", "3g-interference", "black-friday", "damaged-cards", "power-cuts", "store-full")


def minimal() -> dict:
    return {
        "name": "t",
        "duration_h": 1,
        "estate": [{"profile": "countertop-ethernet", "count": 2}],
        "cards": {"mix": [{"label": "healthy", "weight": 1}]},
        "traffic": {"rate_per_hour": 10},
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name: str) -> None:
    assert name in list_scenarios()
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.terminals > 0
    for fault in scenario.faults:
        assert fault.end_h <= scenario.duration_h + scenario.drain_h


def test_minimal_scenario_takes_defaults() -> None:
    s = parse_scenario(minimal())
    assert s.seed == 1 and s.host.capacity == 8 and s.faults == () and len(s.traffic.diurnal) == 24


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\nduration_h = 1\nseed = 1\nestate = [{profile = "mobile-3g", count = 1}]\n'
                           'cards = {mix = [{label = "healthy", weight = 1}]}\n'
                           'traffic = {rate_per_hour = 5, rate_per_minute = 3}\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert str(path) in text and "traffic.rate_per_minute" in text
    assert "rate_per_hour" in text and "diurnal" in text  # the keys allowed in [traffic]
    assert err.value.key == "traffic.rate_per_minute" and err.value.path == str(path)


def test_bad_fault_kind_lists_the_kinds() -> None:
    data = minimal() | {"faults": [{"kind": "meteor", "start_h": 0, "duration_h": 1}]}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "f.toml")
    assert "faults.0.kind" in str(err.value) and "'meteor'" in str(err.value)
    assert all(kind in str(err.value) for kind in FAULT_KINDS)


def test_missing_key_is_named() -> None:
    data = minimal()
    del data["traffic"]
    with pytest.raises(ScenarioError, match=r"f.toml: key 'traffic' is missing"):
        parse_scenario(data, "f.toml")


def test_unknown_profile_lists_shipped_profiles() -> None:
    data = minimal() | {"estate": [{"profile": "toaster", "count": 1}]}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "f.toml")
    assert "estate.0.profile" in str(err.value) and "'toaster'" in str(err.value)
    assert "countertop-ethernet" in str(err.value) and "mobile-3g" in str(err.value)


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"faults": [{"kind": "issuer_down", "start_h": 0, "duration_h": 1}]}, "faults.0", "needs 'issuer'"),
        ({"faults": [{"kind": "acquirer_outage", "mode": "loud", "start_h": 0, "duration_h": 1}]},
         "faults.0.mode", "'refused' or 'silent'"),
        ({"traffic": {"rate_per_hour": 10, "diurnal": [1, 2]}}, "traffic.diurnal", "24 numbers"),
        ({"traffic": {"rate_per_hour": 0}}, "traffic.rate_per_hour", "greater than 0"),
        ({"duration_h": -1}, "duration_h", "greater than 0"),
        ({"traffic": {"rate_per_hour": 5, "amount": {"min": 500, "max": 100}}}, "traffic.amount", "below min"),
        ({"cards": {"mix": []}}, "cards.mix", "at least 1"),
        ({"host": {"cutoff": "25:00"}}, "host.cutoff", "HH:MM"),
    ],
)
def test_rule_breaks_are_named(patch: dict, key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(minimal() | patch, "f.toml")
    assert f"'{key}" in str(err.value) and words in str(err.value)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path, "name = \n"))
    with pytest.raises(ScenarioError) as err:
        load_scenario("no-such-scenario")
    assert "cannot read" in str(err.value) and "acquirer-outage" in str(err.value)


def test_unknown_card_label_is_named() -> None:
    spec = parse_scenario(minimal() | {"cards": {"mix": [{"label": "platinum", "weight": 1}]}}).cards
    with pytest.raises(ValueError, match="'platinum' is not in the card set; allowed: healthy"):
        Population(spec, random.Random(1))


def test_population_clones_are_luhn_valid_unique_and_weighted() -> None:
    spec = parse_scenario(minimal() | {"cards": {"holders": 60, "mix": [
        {"label": "healthy", "weight": 2}, {"label": "mc-healthy", "weight": 1}]}}).cards
    pop = Population(spec, random.Random(1))
    pans = [h.card.card.pan for h in pop.holders]
    assert len(pans) == len(set(pans)) == 60 and all(luhn_valid(p) for p in pans)
    assert sum(p.startswith("476173") for p in pans) == 40
    for pan in pans:  # the host's card set knows every clone, with its issuer
        assert pop.cards.issuer_for_pan(pan) is not None and pop.cards.by_pan(pan) is not None
    assert clone_pan("4761739001010010", 1, 2) != clone_pan("4761739001010010", 2, 1)
