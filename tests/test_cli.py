"""The command line as a user runs it: demo, bench codec, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim import cli
from sim.iso8583.pcap import read_messages


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    if not cli.app.registered_groups:
        cli._register()
    return CliRunner()


def test_demo_runs_a_day_against_the_host(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "demo.pcap"
    result = runner.invoke(cli.app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "history check: OK" in result.output
    assert "verified by the card key" in result.output
    captured = read_messages(out)
    assert [c.mti for c in captured][:4] == ["0800", "0810", "0800", "0810"]
    assert {c.mti for c in captured} >= {"0200", "0210", "0400", "0410", "0220", "0230", "0500", "0510"}
    assert all(c.error is None for c in captured)
    assert "4761739001010010" not in result.output


def test_bench_codec_reports_ratios_against_pyiso8583(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["bench", "codec", "--iterations", "200", "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert set(figures["rates_per_s"]) >= {"pyiso8583 encode", "possim build+encode", "pyiso8583 decode", "possim decode+parse"}
    assert figures["encode_ratio"] > 0 and figures["decode_ratio"] > 0
    assert figures["goal_ratio"] == 0.8


def test_bad_option_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(cli.app, ["bench", "codec", "--iterations", "5"])
    assert result.exit_code == 2
    assert "iterations" in result.output
