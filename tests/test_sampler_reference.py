"""Every sampler's output is unchanged by the sampler-interface refactor (issue 15), up to float rounding.

``tests/data/sampler_reference.npz`` holds the outputs of every sampler (and of SynCoS's
ablations and extensions, batched and unbatched, with diagnostics and finite checks) for fixed
keys on the Gaussian backbone and on a tiny random toy model, recorded with the per-module
``sample`` functions before the refactor (``tests/data/make_sampler_reference.py``).

Integer outputs (NFE counts, prompt indices) must be equal. Float outputs were equal bit for bit
under the jaxlib that recorded them, but a jaxlib release may fuse and round compiled float code
differently: under jax 0.10.2 the Gaussian cases moved by at most 7.7e-7 of their largest
magnitude, the toy cases by at most 2.2e-7 (most by nothing). So the bound is
``|Δ| ≤ ROUNDING · max|reference|`` with ``ROUNDING = 4e-6``; the last test shows that the
smallest change to the math we could name (one CSD iteration fewer) moves the output by far more.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))

import make_sampler_reference as R  # noqa: E402

REFERENCE = np.load(R.PATH)
CASES = list(R.cases())
ROUNDING = 4e-6  # of the array's largest magnitude


def rounding_excess(got: np.ndarray, ref: np.ndarray) -> float:
    """``max|got − ref| / (ROUNDING · max|ref|)``: ≤ 1 means "equal up to float rounding"."""
    if not np.issubdtype(ref.dtype, np.floating):
        return 0.0 if np.array_equal(got, ref) else np.inf
    diff, scale = R.max_difference(got, ref)
    return diff / (ROUNDING * scale) if scale else (0.0 if diff == 0 else np.inf)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_output_equals_the_recorded_one_up_to_rounding(case):
    got = R.outputs(*case)
    name = case[0]
    expected = sorted(k for k in REFERENCE.files if k.startswith(name + "/"))
    assert sorted(got) == expected
    for k in expected:
        assert got[k].shape == REFERENCE[k].shape and got[k].dtype == REFERENCE[k].dtype, k
        assert np.all(np.isfinite(got[k])) or not np.issubdtype(got[k].dtype, np.floating), k
        excess = rounding_excess(got[k], REFERENCE[k])
        assert excess <= 1.0, f"{k}: differs by {excess:.3g}× the rounding bound"


def test_the_rounding_bound_is_far_below_a_change_of_the_math():
    name, sampler, den, sch, layout, cond, key, opts = CASES[0]  # gauss/syncos, iters=3
    assert name == "gauss/syncos" and opts["iters"] == 3
    changed = R.outputs(name, sampler, den, sch, layout, cond, key, dict(opts, iters=2))
    assert rounding_excess(changed[name + "/latents"], REFERENCE[name + "/latents"]) > 100.0
