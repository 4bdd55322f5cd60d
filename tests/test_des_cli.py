"""``possim simulate`` and ``possim bench sim`` from the command line: outputs, and bad arguments refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import _register, app
from sim.des.report import REPORT_KEYS

runner = CliRunner()
_register()

TINY = """
name = "tiny"
seed = 3
duration_h = 0.5
drain_h = 0.3
interval_min = 10
estate = [{ profile = "countertop-ethernet", count = 2 }, { profile = "mobile-3g", count = 1 }]
[cards]
holders = 60
mix = [{ label = "healthy", weight = 3 }, { label = "insufficient-funds", weight = 1 }]
[traffic]
rate_per_hour = 30
[[faults]]
kind = "acquirer_outage"
start_h = 0.1
duration_h = 0.2
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def run(*args: str):
    return runner.invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's box borders and line wrapping taken out."""
    return " ".join(text.replace("│", " ").split())


def test_simulate_writes_report_and_plot(tiny: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "r" / "report.json", tmp_path / "p" / "plot.png"
    result = run("simulate", str(tiny), "--json", str(out), "--plot", str(png), "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert tuple(report) == REPORT_KEYS and report["scenario"] == "tiny" and report["seed"] == 3
    assert report["reconciliation"]["ok"] and "reconciliation" in result.output and "OK" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    again = tmp_path / "again.json"
    assert run("simulate", str(tiny), "--json", str(again), "--quiet").exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.json"
    assert run("simulate", str(tiny), "--seed", "4", "--json", str(other), "--quiet").exit_code == 0
    assert json.loads(other.read_text())["seed"] == 4 and other.read_bytes() != out.read_bytes()


def test_replications_report_means_with_confidence_intervals(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "reps.json"
    result = run("simulate", str(tiny), "--replications", "2", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["seeds"] == [3, 4] and len(data["reports"]) == 2
    tx = data["estimates"]["transactions"]
    values = [r["transactions"] for r in data["reports"]]
    assert tx["mean"] == pytest.approx(sum(values) / 2) and tx["n"] == 2 and tx["ci95"] >= 0
    assert "95% confidence interval" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["simulate", "no-such-scenario"], "shipped: 3g-interference"),
        (["simulate", "default", "--plot", "out.jpg"], "must end in .png"),
        (["simulate", "default", "--seed", "-1"], "--seed"),
        (["simulate", "default", "--replications", "0"], "--replications"),
        (["simulate", "default", "--scale", "0"], "--scale"),
        (["simulate", "default", "--replications", "2", "--plot", "x.png"], "plots are of one run"),
    ],
)
def test_bad_arguments_are_refused_with_exit_2(args: list[str], words: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert words in flat(result.output)


def test_bad_scenario_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("rate_per_hour = 30", "rate_per_hour = 30\nrush = true"), encoding="utf-8")
    result = run("simulate", str(bad))
    assert result.exit_code == 2
    assert "traffic.rush" in flat(result.output) and "rate_per_hour" in flat(result.output)


def test_json_target_that_is_a_directory_is_refused(tiny: Path, tmp_path: Path) -> None:
    result = run("simulate", str(tiny), "--json", str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in flat(result.output)


def test_bench_sim_option_errors() -> None:
    assert run("bench", "sim", "--hours", "0").exit_code == 2
    assert run("bench", "sim", "--scale", "-1").exit_code == 2


def test_same_seed_same_bytes_across_processes_and_hash_seeds(tiny: Path, tmp_path: Path) -> None:
    """Nothing in a run may depend on Python's per-process string hashing (set or dict order of str keys)."""
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"r{hash_seed}.json"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-m", "sim.cli", "simulate", str(tiny), "--json", str(out), "--quiet"],
                       check=True, env=env, capture_output=True, timeout=120)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize(
    ("old", "new", "words", "allowed"),
    [
        ('label = "insufficient-funds"', 'label = "platinum"', "cards.mix.1.label", "allowed: healthy"),
        ('profile = "mobile-3g"', 'profile = "missing/profile.toml"', "estate.1.profile",
         "shipped profiles: countertop-ethernet"),
        ('kind = "acquirer_outage"', 'kind = "issuer_down"\nissuer = "bank-of-nowhere"', "faults.0.issuer",
         "allowed: possim-visa-test"),
    ],
)
def test_scenario_references_are_checked_before_the_run(tmp_path: Path, old: str, new: str, words: str,
                                                        allowed: str) -> None:
    bad = tmp_path / "refs.toml"
    assert old in TINY
    bad.write_text(TINY.replace(old, new), encoding="utf-8")
    result = run("simulate", str(bad), "--quiet")
    assert result.exit_code == 2, result.output
    assert words in flat(result.output) and allowed in flat(result.output)
