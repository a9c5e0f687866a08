"""tools/check_floors.py: each declared floor becomes an exact pin (issue 15)."""

from __future__ import annotations

import pytest

from tools.check_floors import declared, floor_pin


@pytest.mark.parametrize(
    ("requirement", "pin"),
    [
        ("numpy>=1.26", "numpy==1.26"),
        ("torch==2.13.0", "torch==2.13.0"),
        ("tensorrt>=10,<11", "tensorrt==10"),
        ("mediapipe >= 0.10.33", "mediapipe==0.10.33"),
        ("foo[bar]>=2 ; python_version >= '3.11'", "foo[bar]==2"),
        ("plain", "plain"),
    ],
)
def test_a_floor_becomes_an_exact_pin(requirement, pin):
    assert floor_pin(requirement) == pin


def test_every_direct_dependency_and_the_dev_extra_is_checked():
    names = {floor_pin(r).split("==")[0] for r in declared()}
    assert {"numpy", "av", "mediapipe", "onnxruntime", "torch", "pytest", "ruff"} <= names
    assert all("==" in floor_pin(r) for r in declared()), "every direct dependency must declare a floor"
