"""Table 2 in miniature: SynCoS without each of its four design choices.

Without ``t_min`` (stage 2 at every step), without the grounded timestep (CSD's random
``t' ~ U[20, 980]``), without the fixed baseline noise (fresh noise per iteration), and without the
structured prompt (local prompts alone). Paired differences against full SynCoS. Writes
``table2_ablations.{json,md,png}``; ``--quick`` for the reduced run.
"""

from __future__ import annotations

import argparse

import common as C

VARIANTS = (
    C.SYNCOS,
    C.Variant.make("syncos_no_tmin", "syncos", "w/o t_min", t_min=None),
    C.Variant.make("syncos_ungrounded", "syncos", "w/o grounded t", grounded_timestep=False),
    C.Variant.make("syncos_fresh_noise", "syncos", "w/o fixed noise", fixed_baseline_noise=False),
    C.Variant.make("syncos_unstructured", "syncos", "w/o structured prompt", structured=False),
)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    st = C.setup(p.parse_args(argv))
    return C.compare(st, "table2_ablations", "Table 2: SynCoS ablations", VARIANTS, C.SYNCOS,
                     notes="The paper's claim: each of the four ablations hurts.")


if __name__ == "__main__":
    main()
