"""Compute the T5 text embeddings a CogVideoX run needs (requires the ``[torch]`` extra).

    python experiments/encode_t5.py --t5 FOLDER SCENARIO.yaml [...] --out embeddings.npz [--max-length 226]

``FOLDER`` is a local folder with a T5 encoder and its tokenizer (e.g. the ``text_encoder`` and
``tokenizer`` subfolders of a CogVideoX download, or any folder ``from_pretrained`` accepts; give
``--tokenizer`` if the tokenizer lives elsewhere). Every prompt a scenario's chunks use (global +
local, joined as the sampler joins them) and the empty negative prompt are encoded, padded to
``--max-length`` tokens as CogVideoX's pipeline does, and written as ``texts [P]`` and
``embeddings [P, L, D]`` for ``syncos generate --backbone cogvideox --text-embeddings``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


def encode(texts, t5_folder: str, tokenizer_folder: str | None = None, max_length: int = 226) -> np.ndarray:
    """``[len(texts), max_length, D]`` float32 T5 encoder states (CogVideoX pipeline's ``_get_t5_prompt_embeds``)."""
    import torch
    from transformers import AutoTokenizer, T5EncoderModel

    tok = AutoTokenizer.from_pretrained(tokenizer_folder or t5_folder, local_files_only=True)
    model = T5EncoderModel.from_pretrained(t5_folder, local_files_only=True).eval()
    ids = tok(list(texts), padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
              return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids)[0].float().numpy()


def scenario_texts(paths) -> list[str]:
    from syncos_jax.prompts import join_prompt, load_scenario

    texts = [""]
    for p in paths:
        s = load_scenario(p)
        texts += [join_prompt(s.prompt.global_prompt, lp) for lp in s.prompt.local_prompts]
    return list(dict.fromkeys(texts))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="+")
    ap.add_argument("--t5", required=True, help="a local T5 encoder folder")
    ap.add_argument("--tokenizer", default=None, help="its tokenizer folder (default: --t5)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-length", type=int, default=226)
    args = ap.parse_args(argv)
    texts = scenario_texts(args.scenarios)
    emb = encode(texts, args.t5, args.tokenizer, args.max_length)
    np.savez(args.out, texts=np.array(texts), embeddings=emb)
    print(f"wrote {len(texts)} embeddings {emb.shape[1:]} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
