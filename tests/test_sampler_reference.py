"""Every sampler's output is unchanged bit for bit by the sampler-interface refactor (issue 15).

``tests/data/sampler_reference.npz`` holds the outputs of every sampler (and of SynCoS's
ablations and extensions, batched and unbatched, with diagnostics and finite checks) for fixed
keys on the Gaussian backbone and on a tiny random toy model, recorded with the per-module
``sample`` functions before the refactor (``tests/data/make_sampler_reference.py``).
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))

import make_sampler_reference as R  # noqa: E402

REFERENCE = np.load(R.PATH)
CASES = list(R.cases())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_output_equals_the_recorded_one_bit_for_bit(case):
    got = R.outputs(*case)
    name = case[0]
    expected = sorted(k for k in REFERENCE.files if k.startswith(name + "/"))
    assert sorted(got) == expected
    for k in expected:
        np.testing.assert_array_equal(got[k], REFERENCE[k], err_msg=k)
