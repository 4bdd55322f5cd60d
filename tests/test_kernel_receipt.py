"""DEV-02: the receipt printer is device state; the transaction never waits on it."""

from __future__ import annotations

import pytest

from sim.emv.kernel import TerminalConfig

from tests.test_kernel_helpers import Recorder, config, run, unreachable, virtual


@pytest.mark.parametrize("paper_left", [None, 1, 80])
def test_a_terminal_with_paper_prints(paper_left: int | None) -> None:
    result = run(config("mobile-3g", paper_left=paper_left), virtual("healthy"), Recorder(), 7500)
    assert result.approved and result.receipt == "printed" and result.receipt_printed


def test_out_of_paper_completes_the_transaction_and_marks_the_receipt() -> None:
    with_paper = run(config("mobile-3g"), virtual("healthy"), Recorder(), 7500)
    without = run(config("mobile-3g", paper_left=0), virtual("healthy"), Recorder(), 7500)
    assert without.receipt == "not printed: out of paper" and not without.receipt_printed
    assert (without.outcome, without.arc, without.cryptogram, without.messages) == (
        with_paper.outcome, with_paper.arc, with_paper.cryptogram, with_paper.messages)


def test_declines_are_marked_too() -> None:
    result = run(config("mobile-3g", paper_left=0), virtual("healthy"), unreachable, 7500)
    assert result.declined and result.receipt == "not printed: out of paper"


def test_a_terminal_without_printer_never_prints() -> None:
    result = run(config("unattended-contactless"), virtual("healthy"), Recorder(), 3000)
    assert result.approved and result.receipt == "not printed: no printer"


def test_profiles_say_whether_a_printer_is_fitted() -> None:
    assert TerminalConfig.from_profile("countertop-ethernet").printer
    assert not TerminalConfig.from_profile("unattended-contactless").printer
    assert TerminalConfig.from_profile("mobile-3g", paper_left=0).receipt == "not printed: out of paper"
