import math

import pytest

from dnahnet.schedules import lr_factor


def test_cosine_endpoints_and_monotone_decay():
    total, warmup = 100, 10
    f = [lr_factor("cosine", s, total, warmup, 0.1, 0.2) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[total] == pytest.approx(0.1)
    assert all(a >= b - 1e-12 for a, b in zip(f[10:-1], f[11:], strict=True))
    mid = 10 + 45
    assert f[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_wsd_plateau_then_linear_decay():
    total = 100
    f = [lr_factor("wsd", s, total, 10, 0.0, 0.2) for s in range(total + 1)]
    assert all(v == 1.0 for v in f[10:80])
    assert f[90] == pytest.approx(0.5) and f[100] == pytest.approx(0.0)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor("linear", 0, 10, 1, 0.1, 0.2)
