"""What each result status is counted as, and how a count is said, in every report format.

A run's results have one of :data:`~gradcheck_cli.result.RESULT_STATUSES`. The
ones in :data:`NOT_OK` make a run fail: ``xpass`` among them, because an
expected failure that passes is reported, as pytest's ``xfail_strict`` does.
``skip`` and ``xfail`` do not (:data:`~gradcheck_cli.result.OK_STATUSES`).
"""

from __future__ import annotations

from ..result import OK_STATUSES, RESULT_STATUSES, CaseResult, Report

# Results that make the run fail.
NOT_OK = tuple(status for status in RESULT_STATUSES if status not in OK_STATUSES)


def count_words(number: int, key: str) -> str:
    """``1 error``, ``2 errors``, ``3 passed``: a count with its word, in pytest's grammar."""
    if key == "errors":
        return f"{number} error" if number == 1 else f"{number} errors"
    return f"{number} {key}"


def counts_text(report: Report) -> str:
    """``1 passed, 1 failed, 1 error, 2 skipped``: passed, failed and errors always, the rest when any."""
    always = ("passed", "failed", "errors")
    return ", ".join(
        count_words(number, key) for key, number in report.summary.items() if number or key in always
    )


def verdict(report: Report) -> str:
    """``FAIL: 1 passed, 1 failed, 1 error``: the run's last line; passed always, the rest when any."""
    word = "PASS" if report.ok else "FAIL"
    words = [count_words(n, key) for key, n in report.summary.items() if n or key == "passed"]
    return f"{word}: " + ", ".join(words)


def reason(result: CaseResult) -> str | None:
    """Why a result was skipped, expected to fail or interrupted: the spec's ``skip:``/``xfail:``
    reason, or the error text when there is no reason."""
    return result.reason or result.error
