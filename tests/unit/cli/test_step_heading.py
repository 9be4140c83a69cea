"""How ``upkeep run`` and ``upkeep runs show`` head a step: phase first, a failed
command's exit code last."""

from __future__ import annotations

from upkeep.cli.runbooks import exit_note, step_heading


def test_a_command_that_exited_non_zero_says_its_code() -> None:
    assert exit_note({"exit_code": 3}) == " (exit 3)"
    assert exit_note({"exit_code": 0}) == ""
    assert exit_note({"exit_code": True}) == ""
    assert exit_note({}) == ""
    assert step_heading("undo", {"phase": "rollback", "exit_code": 1}) == "rollback: undo (exit 1)"
    assert step_heading("break", {"exit_code": -9}) == "break (exit -9)"
