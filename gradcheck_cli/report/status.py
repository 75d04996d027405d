"""What each result status is counted as, and how a count is said, in every report format.

A run's results have one of :data:`~gradcheck_cli.result.RESULT_STATUSES`. The
ones in :data:`NOT_OK` make a run fail: ``xpass`` among them, because an
expected failure that passes is reported, as pytest's ``xfail_strict`` does.
``skip`` and ``xfail`` do not.
"""

from __future__ import annotations

from ..result import CaseResult, Report

# Results that make the run fail, and those that do not although they did not pass.
NOT_OK = ("fail", "error", "xpass", "interrupted")
NOT_RUN_OR_EXPECTED = ("skip", "xfail")
# Report.summary's key for each status, in the order a summary line says them.
SUMMARY_KEYS = {
    "pass": "passed",
    "fail": "failed",
    "error": "errors",
    "skip": "skipped",
    "xfail": "xfailed",
    "xpass": "xpassed",
    "interrupted": "interrupted",
}


def counts(report: Report) -> dict[str, int]:
    """The number of results of each status, keyed as :data:`SUMMARY_KEYS` names them.

    ``Report.summary`` says each count; a key it does not have yet is counted
    from the results."""
    summary = report.summary
    return {
        key: summary.get(key, sum(r.status == status for r in report.results))
        for status, key in SUMMARY_KEYS.items()
    }


def count_words(number: int, key: str) -> str:
    """``1 error``, ``2 errors``, ``3 passed``: a count with its word, in pytest's grammar."""
    if key == "errors":
        return f"{number} error" if number == 1 else f"{number} errors"
    return f"{number} {key}"


def counts_text(report: Report) -> str:
    """``1 passed, 1 failed, 1 error, 2 skipped``: passed, failed and errors always, the rest when any."""
    always = ("passed", "failed", "errors")
    return ", ".join(
        count_words(number, key) for key, number in counts(report).items() if number or key in always
    )


def verdict(report: Report) -> str:
    """``FAIL: 1 passed, 1 failed, 1 error``: the run's last line; passed always, the rest when any."""
    word = "PASS" if report.ok else "FAIL"
    words = [count_words(n, key) for key, n in counts(report).items() if n or key == "passed"]
    return f"{word}: " + ", ".join(words)


def reason(result: CaseResult) -> str | None:
    """Why a result was skipped, expected to fail or interrupted: the spec's ``skip:``/``xfail:``
    reason, or the error text when there is no reason."""
    given = getattr(result, "reason", None)
    if isinstance(given, str) and given:
        return given
    return result.error
