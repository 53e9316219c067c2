"""The limit on repeated log lines (``app.loglimit.RepeatFilter``) on a real handler."""

from __future__ import annotations

import io
import logging
import time

import pytest

from app.loglimit import RepeatFilter


@pytest.fixture
def logged():
    """A logger whose handler writes to a buffer through a RepeatFilter of 3 per 0.5 s."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RepeatFilter(limit=3, window=0.5))
    logger = logging.getLogger("tests.loglimit")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_repeated_lines_are_suppressed_then_counted(logged):
    logger, out = logged
    for n in range(1000):
        logger.warning("bad packet from %s", f"10.0.0.{n % 7}")  # one template
    logger.warning("another message")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["bad packet from 10.0.0.0", "bad packet from 10.0.0.1"]
    assert lines[2] == "bad packet from 10.0.0.2 [similar lines suppressed for up to 0.5 s]"
    assert lines[3:] == ["another message"]  # other templates have their own allowance

    time.sleep(0.6)
    logger.warning("bad packet from %s", "10.0.0.9")
    assert out.getvalue().splitlines()[-1] == (
        "bad packet from 10.0.0.9 [997 similar lines were suppressed]")


def test_a_record_seen_by_two_handlers_counts_once(logged):
    logger, out = logged
    second = io.StringIO()
    handler = logging.StreamHandler(second)
    handler.addFilter(logger.handlers[0].filters[0])
    logger.addHandler(handler)
    try:
        for _ in range(3):
            logger.error("disk full")
    finally:
        logger.removeHandler(handler)
    assert len(out.getvalue().splitlines()) == len(second.getvalue().splitlines()) == 3
