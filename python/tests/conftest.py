# Shared pytest fixtures for the jsonbus binding tests: a fresh bus per test, closed after.
import pytest

import jsonbus


@pytest.fixture
def bus():
    """A bus with two dispatcher threads, closed (with a time limit) after the test."""
    b = jsonbus.Bus({"dispatcher_threads": 2})
    try:
        yield b
    finally:
        b.close(timeout_ms=5000)
