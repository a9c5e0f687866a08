"""Signals held through steps that must not be cut, and the thread policy from usable CPUs (issue 15)."""

from __future__ import annotations

import os
import signal

import cv2
import pytest

from pipeline.frames import SourceInfo
from pipeline.runtime.signals import SignalGate, signals_deferred
from pipeline.runtime.threads import detector_threads, encoder_threads, job_threads, live_infer_threads


@pytest.fixture(autouse=True)
def _python_default_sigint():
    """Python's own SIGINT handler for each test (a CLI test run earlier may have left it ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_signal_inside_a_held_step_is_delivered_after_it():
    steps = []
    with SignalGate() as gate, pytest.raises(KeyboardInterrupt):
        with gate.held():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")  # the step goes on
            steps.append("end of step")
        steps.append("never")
    assert steps == ["after the signal", "end of step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_outside_a_held_step_a_signal_acts_at_once():
    with SignalGate(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**6):  # the handler runs at the next bytecode
            pass


def test_signals_deferred_does_not_turn_an_error_into_an_interrupt():
    with pytest.raises(ValueError), signals_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("the block's own error wins")


def test_an_ignored_signal_stays_ignored():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with signals_deferred():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize(
    ("cpus", "run_1080p", "run_360p", "live", "live_infer", "x264"),
    [(1, 1, 1, 1, 1, 2), (2, 1, 2, 2, 1, 2), (4, 3, 4, 3, 2, 2), (16, 8, 8, 8, 8, 8)],
)
def test_thread_policy_keeps_the_2_core_measurements_and_grows_with_the_machine(
    cpus, run_1080p, run_360p, live, live_infer, x264
):
    assert detector_threads(1920, 1080, cpus) == run_1080p
    assert detector_threads(640, 360, cpus) == run_360p
    assert (
        detector_threads(1920, 1080, cpus, live=True) == detector_threads(640, 360, cpus, live=True) == live
    )
    assert live_infer_threads(cpus) == live_infer
    assert encoder_threads(cpus) == x264


def test_job_threads_restores_opencvs_setting():
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        with job_threads(SourceInfo("x", 1920, 1080, 30.0)) as n:
            assert cv2.getNumThreads() == n == detector_threads(1920, 1080)
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)
