"""The shared statistics (perfmodel.stats)."""

import math

import pytest

from perfmodel.stats import kendall_tau, median_abs


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_median_abs():
    assert median_abs([-0.2, 0.1, 0.05]) == pytest.approx(0.1)
    assert math.isnan(median_abs([]))
