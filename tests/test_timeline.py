"""The step's timeline (perfmodel.model.timeline): exposed communication is never more than the
communication, equals it with an instant backward, and one bucket is the fused case; overlap
through buckets or per-blob messages can only help, and the planner-scale sweep stays fast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import scenario as SC
from perfmodel.model import timeline as TL
from perfmodel.model.throughput import evaluate


def _cost(alpha=2e-6, beta=1 / 10e9):
    # a ring allreduce's Hockney cost, over arrays of group sizes
    return lambda p, nb: np.where(p > 1, 2 * (p - 1) * alpha + 2 * (p - 1) / p * nb * beta, 0.0)


blobs = st.lists(st.floats(1e3, 5e7), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(blobs, st.floats(1e-4, 1.0), st.sampled_from(TL.MESSAGES), st.integers(2, 4096),
       st.floats(1e5, 1e8), st.randoms(use_true_random=False))
def test_exposed_never_exceeds_the_communication(sizes, t_c, kind, p, bucket, rnd):
    n = len(sizes)
    ready = np.array(sorted(rnd.uniform(0.3, 1.0) for _ in range(n)))[::-1]  # fwd order
    nb, rd = TL.messages(np.array(sizes), ready, kind, bucket)
    assert nb.sum() == pytest.approx(sum(sizes))
    tc = np.array([t_c])
    exp, total = TL.exposed(tc, _cost(), np.array([p]), nb, rd, overlap=True)
    no, total2 = TL.exposed(tc, _cost(), np.array([p]), nb, rd, overlap=False)
    assert total == pytest.approx(total2) and no == pytest.approx(total)
    assert 0 <= exp[0] <= total[0] + 1e-12 * (t_c + total[0])  # up to rounding
    # an instant backward: every gradient ready when compute ends -> nothing hides
    inst, _ = TL.exposed(tc, _cost(), np.array([p]), nb, np.ones(len(nb)), overlap=True)
    assert inst == pytest.approx(total, rel=1e-9, abs=1e-12 * t_c)


def test_one_bucket_is_the_fused_case():
    sizes = np.array([4e6, 1e6, 8e6, 2e5])
    ready = np.array([0.9, 0.8, 0.6, 0.4])
    one = TL.messages(sizes, ready, "bucketed", bucket_bytes=1e12)
    fused = TL.messages(sizes, ready, "fused")
    assert one[0].tolist() == fused[0].tolist()
    tc, p = np.array([0.05]), np.array([64.0])
    assert TL.exposed(tc, _cost(), p, *one, overlap=True)[0] == pytest.approx(
        TL.exposed(tc, _cost(), p, *fused, overlap=True)[0])
    # per blob, in backward order: the last layer's gradient (ready first) goes first
    nb, rd = TL.messages(sizes, ready, "per-blob")
    assert rd.tolist() == sorted(ready) and nb.tolist() == [2e5, 8e6, 1e6, 4e6]


def test_ready_fractions_follow_backward():
    # three layers, equal FLOP: forward 3/9 of the step, then backward from the last layer
    r = TL.ready_fractions([1, 1, 1], [2, 2, 2], owner=[0, 1, 2, 2])
    assert r.tolist() == pytest.approx([9 / 9, 7 / 9, 5 / 9, 5 / 9])


def test_overlap_helps_a_large_model_and_the_sweep_stays_fast():
    base = ['workload.net="resnet50"', "workload.image_size=224", 'training.strategy="sync"',
            "training.groups=1", "training.param_servers=0", "training.workers=1024"]
    step = {}
    for m, o in (("fused", "false"), ("per-blob", "true"), ("bucketed", "true")):
        s, _ = SC.load("cori-knl-hep", [*base, f'cluster.messages="{m}"', f"cluster.overlap={o}"])
        inp = SC.to_inputs(s)
        step[m] = float(evaluate(inp, 0, 1024, 1, 0, 8)["step_time_s"])
    assert step["per-blob"] < step["fused"] and step["bucketed"] < step["fused"]
