"""Conformance features: catalogue ids as marks, and a per-id report at the end of the run.

Every scenario carries the id of its CONFORMANCE.md entry as a Gherkin tag
(``@ONL-01``). Tags become pytest marks (``ONL_01``, so ``-m ONL_01`` selects one
entry, and ``catalogue``). At the end of the run the terminal summary lists each id
with how many of its scenarios passed, and ``out/conformance.json`` keeps the same
figures for CI dashboards.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

CATALOGUE_ID = re.compile(r"^(ONL|OFF|REV|FB|DEV|SET|STIP|SEC)-\d\d$")
GROUPS = ("ONL", "OFF", "REV", "FB", "DEV", "SET", "STIP", "SEC")
_results: dict[str, dict[str, int]] = defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "catalogue(id): the CONFORMANCE.md entry a scenario checks")
    for group in GROUPS:
        config.addinivalue_line("markers", f"{group}: conformance group {group}")
        for number in range(1, 21):
            config.addinivalue_line("markers", f"{group}_{number:02d}: conformance entry {group}-{number:02d}")


def pytest_bdd_apply_tag(tag: str, function):  # noqa: ANN001 - pytest-bdd hook signature
    if CATALOGUE_ID.match(tag):
        pytest.mark.catalogue(tag)(function)
        getattr(pytest.mark, tag.replace("-", "_"))(function)
        return True
    if tag in GROUPS:
        getattr(pytest.mark, tag)(function)
        return True
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    ids = [m.args[0] for m in item.iter_markers("catalogue") if m.args]
    if not ids or (report.when != "call" and not (report.when == "setup" and report.outcome != "passed")):
        return
    for entry in ids:
        _results[entry][report.outcome] += 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ANN001
    if not _results:
        return
    terminalreporter.section("conformance catalogue")

    def order(entry: str) -> tuple[int, int]:
        group, number = entry.split("-")
        return (GROUPS.index(group), int(number))

    for entry in sorted(_results, key=order):
        counts = _results[entry]
        verdict = "FAIL" if counts["failed"] else ("pass" if counts["passed"] else "skip")
        terminalreporter.write_line(
            f"{entry:<8} {verdict:<5} passed {counts['passed']}, failed {counts['failed']}, skipped {counts['skipped']}"
        )
    out = Path(config.rootpath) / "out"
    out.mkdir(exist_ok=True)
    (out / "conformance.json").write_text(json.dumps(dict(sorted(_results.items(), key=lambda kv: order(kv[0]))), indent=2))
