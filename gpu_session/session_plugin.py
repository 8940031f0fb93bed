"""pytest plugin of the GPU session's test stage (``-p gpu_session.session_plugin``).

Why: a session's command is killed at its time limit and only a few files come back, so the
summary is rewritten after every test (a killed run still leaves an up-to-date one), and a test
that hangs must not eat the whole budget: where pytest-timeout is not installed,
``SSA_FAST_TEST_TIMEOUT`` seconds arm an alarm around each test (main thread, POSIX), which fails
that test with a TimeoutError and moves on.

Writes ``$SSA_FAST_SESSION_OUT/tests.md``: counts, every failure and error with its last message
line, skip reasons with counts, tests collected but not run, the slowest tests.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

_OUT = os.environ.get("SSA_FAST_SESSION_OUT")
_TIMEOUT = int(os.environ.get("SSA_FAST_TEST_TIMEOUT", "0") or 0)


class _Summary:
    def __init__(self):
        self.collected = 0
        self.start = time.time()
        self.outcomes: dict[str, str] = {}  # nodeid -> passed / failed / error / skipped
        self.messages: dict[str, str] = {}
        self.skips: Counter = Counter()
        self.durations: dict[str, float] = {}
        self.collect_errors: list[str] = []

    def write(self) -> None:
        if not _OUT:
            return
        counts = Counter(self.outcomes.values())
        lines = [f"# GPU session: tests ({time.strftime('%Y-%m-%d %H:%M:%S')}, "
                 f"{time.time() - self.start:.0f} s so far)", "",
                 f"collected {self.collected}; passed {counts['passed']}, failed "
                 f"{counts['failed']}, errors {counts['error']}, skipped {counts['skipped']}, "
                 f"not run {max(0, self.collected - len(self.outcomes))}; collection errors "
                 f"{len(self.collect_errors)}", ""]
        if self.collect_errors:
            lines += ["## collection errors", ""] + [f"- {e}" for e in self.collect_errors] + [""]
        bad = [n for n, o in self.outcomes.items() if o in ("failed", "error")]
        if bad:
            lines += ["## failures and errors", ""]
            lines += [f"- {self.outcomes[n]}: `{n}`: {self.messages.get(n, '')}" for n in bad]
            lines.append("")
        if self.skips:
            lines += ["## skip reasons", ""]
            lines += [f"- {c} x {r}" for r, c in self.skips.most_common()] + [""]
        slow = sorted(self.durations.items(), key=lambda kv: -kv[1])[:10]
        if slow:
            lines += ["## slowest", ""] + [f"- {d:.1f} s `{n}`" for n, d in slow]
        path = Path(_OUT) / "tests.md"
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)


_summary = _Summary()


def _last_line(report) -> str:
    text = getattr(report, "longreprtext", "") or str(report.longrepr or "")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:300]


def pytest_configure(config):
    """Under pytest-xdist only the controller writes the summary (it sees every worker's
    reports); a worker has ``workerinput`` (not the environment: a pytest started by a test
    inherits its worker's variables)."""
    global _OUT
    if hasattr(config, "workerinput"):
        _OUT = None


def pytest_collectreport(report):
    if report.failed:
        _summary.collect_errors.append(f"`{report.nodeid}`: {_last_line(report)}")
        _summary.write()


def pytest_collection_finish(session):
    _summary.collected = len(session.items)
    _summary.write()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under xdist the controller collects nothing itself: each worker reports its items."""
    _summary.collected = max(_summary.collected, len(ids))
    _summary.write()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not _TIMEOUT or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded SSA_FAST_TEST_TIMEOUT={_TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pytest_runtest_logreport(report):
    nodeid = report.nodeid
    if report.when == "call":
        _summary.durations[nodeid] = report.duration
    if report.skipped:
        _summary.outcomes[nodeid] = "skipped"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else _last_line(report)
        _summary.skips[reason.removeprefix("Skipped: ")[:200]] += 1
    elif report.failed:
        _summary.outcomes[nodeid] = "failed" if report.when == "call" else "error"
        _summary.messages[nodeid] = _last_line(report)
    elif report.when == "call":
        _summary.outcomes.setdefault(nodeid, "passed")
    else:
        return
    _summary.write()


def pytest_sessionfinish(session, exitstatus):
    _summary.write()
