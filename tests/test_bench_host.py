"""``possim bench host``: a short run measures both servers, and the host's answers are real approvals."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sim.cli import _register, app


def test_short_bench_measures_echo_host_and_durable_host_and_reports_the_ratios(tmp_path):
    from sim.live.bench_host import run

    result = run(connections=4, duration=0.7, warmup=0.3, rounds=1, work_dir=tmp_path)
    assert result.echo.completed > 0 and result.host.completed > 0
    assert result.durable is not None and result.durable.completed > 0
    for host in (result.host, result.durable):
        assert host.errors == 0 and set(host.codes) == {"00"}
        assert host.p50_ms <= host.p99_ms <= host.max_ms
        assert host.server_cpu_us > result.echo.server_cpu_us  # the issuer's work shows up as CPU
    assert abs(result.ratio - result.host.rate / result.echo.rate) < 1e-9
    assert abs(result.durable_ratio - result.durable.rate / result.echo.rate) < 1e-9
    # the hosts really answered what was measured; only the durable one stored events, in commit groups
    assert result.host_status["answered"] >= result.host.completed
    assert result.host_status["events_stored"] is None
    assert result.durable_status["answered"] >= result.durable.completed
    assert result.durable_status["events_stored"] >= result.durable.completed
    assert 0 < result.durable_status["commits"] <= result.durable_status["events_stored"]
    assert (tmp_path / "journal.jsonl").stat().st_size > 0 and (tmp_path / "durable-journal.jsonl").stat().st_size > 0
    assert (tmp_path / "state" / "host.sqlite3").exists()


def test_cli_json_output_has_both_servers():
    _register()
    out = CliRunner().invoke(app, ["bench", "host", "--connections", "2", "--duration", "0.5", "--warmup", "0.2",
                                   "--rounds", "1", "--no-state", "--json", "--pool", "16"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["pool"] == 16
    assert data["echo"]["rate"] > 0 and data["host"]["rate"] > 0
    assert data["state"] is False and data["journal"] is True and data["goal_ratio"] == 0.5
    assert data["durable"] is None and data["durable_ratio"] is None


def test_bench_on_a_mac_dialect_and_ascii_framing_gets_signed_approvals(tmp_path):
    from sim.live.bench_host import run

    result = run(connections=2, duration=0.5, warmup=0.2, rounds=1, work_dir=tmp_path, state=False,
                 dialect="iso8583-1987-ascii-mac", framing="ascii4+tpdu")
    assert (result.dialect, result.framing) == ("iso8583-1987-ascii-mac", "ascii4+tpdu")
    assert result.echo.completed > 0 and result.host.completed > 0
    # a wrong or missing MAC would have been answered 63: every answer is an approval
    assert result.host.errors == 0 and set(result.host.codes) == {"00"}
    assert result.host_status["format_errors"] == 0


def test_cli_names_a_bad_dialect_or_framing_before_starting_anything():
    _register()
    out = CliRunner().invoke(app, ["bench", "host", "--dialect", "iso8583-2003-binary"])
    assert out.exit_code == 2 and "iso8583-1987-ascii-mac" in out.output
    out = CliRunner().invoke(app, ["bench", "host", "--framing", "be4"])
    assert out.exit_code == 2 and "allowed: be2, le2, ascii4" in out.output


def test_the_default_pool_holds_more_distinct_cryptograms_than_the_host_caches():
    from sim.core import crypto
    from sim.emv import tlv
    from sim.live.bench_host import DISTINCT_POOL, request_pool

    sales = request_pool(DISTINCT_POOL)
    icc = [tlv.decode(bytes.fromhex(s["55"])) for s in sales]
    assert len({i["9F26"] for i in icc}) == DISTINCT_POOL  # every ARQC its own
    caches = (crypto._mac_ac, crypto._derive_session_key, crypto._arpc_1)
    assert DISTINCT_POOL > max(max(c.cache_info().maxsize for c in caches), tlv._DECODED_MAX)
