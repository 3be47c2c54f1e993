"""Table 3 in miniature: the stage ablations (1+3, 2, 1+2+3).

Stages 1+3 alone are Gen-L-Video exactly, stage 2 alone is CSD-only (stage 2 from noise at
every step), and 1+2+3 is SynCoS (ALGORITHM.md §4): the same variants as Table 1, so their cached
runs are reused. Writes ``table3_stages.{json,md,png}``; ``--quick`` for the reduced run.
"""

from __future__ import annotations

import argparse
import dataclasses

import common as C

VARIANTS = (
    dataclasses.replace(C.GEN_L_VIDEO, label="stages 1+3"),
    dataclasses.replace(C.CSD_ONLY, label="stage 2"),
    dataclasses.replace(C.SYNCOS, label="stages 1+2+3"),
)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_arguments(p)
    st = C.setup(p.parse_args(argv))
    return C.compare(st, "table3_stages", "Table 3: stage ablations", VARIANTS, VARIANTS[2],
                     notes="The paper's claim: all three stages are needed (1+2+3 is best).")


if __name__ == "__main__":
    main()
