"""``possim bench core``: CPU per operation of the core, as a user runs it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sim import cli


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if not cli.app.registered_groups:
        cli._register()
    return CliRunner()


def test_bench_core_reports_every_operation_against_the_baseline(runner: CliRunner) -> None:
    result = runner.invoke(
        cli.app, ["bench", "core", "--operations", "20", "--transactions", "10", "--rounds", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    us = data["cpu_us_per_op"]
    assert set(us) == set(data["ratio_to_baseline"])
    assert data["baseline"] in us and data["ratio_to_baseline"][data["baseline"]] == 1.0
    assert all(value > 0 for value in us.values())
    # a whole chip transaction does more than answer its one online request
    assert us["kernel + card + host (one transaction)"] > us["host.handle (chip 0200, approved)"]


def test_bench_core_refuses_a_round_too_small_to_measure(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["bench", "core", "--operations", "5"])
    assert result.exit_code != 0
    assert "operations" in result.output
