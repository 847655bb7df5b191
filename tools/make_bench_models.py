#!/usr/bin/env python3
"""Write GPT-2-shaped checkpoints with random weights for benchmarks (issue 6).

For each shape, OUT/gpt2-<shape>/ gets a Hugging Face layout:
  config.json        (written by transformers' GPT2Config, as save_pretrained writes it)
  model.safetensors  keys with the `transformer.` prefix, tied head (no lm_head.weight)
  vocab.json, merges.txt  (copied from the shared GPT-2 tokenizer)

Weights: 2-D matrices N(0, 0.02) (seeded numpy), LayerNorm weights 1, biases 0 — speed does not
depend on the values. Memory-friendly: no torch model is built; the safetensors file is
assembled by hand (8-byte LE header length, JSON header padded to 8 bytes, raw data) and written
tensor by tensor, so peak memory is one tensor (the 1.5B wte is 321 MB in f32).

Shapes (n_layer, n_head, n_embd; n_positions 1024, vocab 50257):
  124M 12/12/768   355M 24/16/1024   774M 36/20/1280   1.5B 48/25/1600
Sizes in f32: 0.5 / 1.4 / 3.1 / 6.2 GB (half in f16).

Usage: python3 tools/make_bench_models.py [--shapes 124M,355M,774M,1.5B] [--out tools/out]
                                          [--dtype f32|f16] [--seed 0]
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

SHAPES = {
    "124M": (12, 12, 768),
    "355M": (24, 16, 1024),
    "774M": (36, 20, 1280),
    "1.5B": (48, 25, 1600),
}
VOCAB = 50257
N_POS = 1024


def tensor_specs(n_layer, n_embd):
    """(name, shape, kind) in the order transformers writes them (sorted by name)."""
    specs = [("transformer.wte.weight", (VOCAB, n_embd), "w"),
             ("transformer.wpe.weight", (N_POS, n_embd), "w"),
             ("transformer.ln_f.weight", (n_embd,), "one"),
             ("transformer.ln_f.bias", (n_embd,), "zero")]
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        specs += [
            (p + "ln_1.weight", (n_embd,), "one"), (p + "ln_1.bias", (n_embd,), "zero"),
            (p + "attn.c_attn.weight", (n_embd, 3 * n_embd), "w"),
            (p + "attn.c_attn.bias", (3 * n_embd,), "zero"),
            (p + "attn.c_proj.weight", (n_embd, n_embd), "w"),
            (p + "attn.c_proj.bias", (n_embd,), "zero"),
            (p + "ln_2.weight", (n_embd,), "one"), (p + "ln_2.bias", (n_embd,), "zero"),
            (p + "mlp.c_fc.weight", (n_embd, 4 * n_embd), "w"),
            (p + "mlp.c_fc.bias", (4 * n_embd,), "zero"),
            (p + "mlp.c_proj.weight", (4 * n_embd, n_embd), "w"),
            (p + "mlp.c_proj.bias", (n_embd,), "zero"),
        ]
    return sorted(specs)


def write_safetensors(path, specs, dtype, seed):
    np_dtype, st_dtype = {"f32": ("<f4", "F32"), "f16": ("<f2", "F16")}[dtype]
    itemsize = np.dtype(np_dtype).itemsize
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in specs:
        n = int(np.prod(shape)) * itemsize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(len(hj).to_bytes(8, "little"))
        f.write(hj)
        for name, shape, kind in specs:
            if kind == "w":
                # generate row blocks to bound temporaries
                rows = shape[0]
                step = max(1, (1 << 24) // int(np.prod(shape[1:])))
                for r in range(0, rows, step):
                    blk = rng.standard_normal((min(step, rows - r),) + tuple(shape[1:]),
                                              dtype=np.float32)
                    blk *= 0.02
                    f.write(blk.astype(np_dtype, copy=False).tobytes())
            else:
                val = 1.0 if kind == "one" else 0.0
                f.write(np.full(shape, val, dtype=np_dtype).tobytes())
    return 8 + len(hj) + off


def write_config(d, n_layer, n_head, n_embd, dtype):
    try:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import GPT2Config
        c = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=N_POS,
                       vocab_size=VOCAB, tie_word_embeddings=True,
                       dtype={"f32": "float32", "f16": "float16"}[dtype])
        c.architectures = ["GPT2LMHeadModel"]
        c.save_pretrained(d)
    except ImportError:  # minimal equivalent without transformers
        cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
               "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
               "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd, "n_inner": None,
               "n_positions": N_POS, "vocab_size": VOCAB, "bos_token_id": 50256,
               "eos_token_id": 50256, "tie_word_embeddings": True,
               "dtype": {"f32": "float32", "f16": "float16"}[dtype]}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="124M,355M,774M,1.5B")
    ap.add_argument("--out", default="tools/out")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default="/work/shared/gpt2-tokenizer")
    a = ap.parse_args()
    for shape in a.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape {shape}; known: {', '.join(SHAPES)}")
        n_layer, n_head, n_embd = SHAPES[shape]
        d = os.path.join(a.out, f"gpt2-{shape}" + ("" if a.dtype == "f32" else f"-{a.dtype}"))
        os.makedirs(d, exist_ok=True)
        t0 = time.time()
        specs = tensor_specs(n_layer, n_embd)
        n_params = sum(int(np.prod(s)) for _, s, _ in specs)
        size = write_safetensors(os.path.join(d, "model.safetensors"), specs, a.dtype,
                                 a.seed + 1000 * list(SHAPES).index(shape))
        write_config(d, n_layer, n_head, n_embd, a.dtype)
        shutil.copyfile(os.path.join(a.tokenizer, "encoder.json"), os.path.join(d, "vocab.json"))
        shutil.copyfile(os.path.join(a.tokenizer, "vocab.bpe"), os.path.join(d, "merges.txt"))
        print(f"{d}: {n_params:,} parameters, model.safetensors {size:,} bytes "
              f"({time.time() - t0:.1f}s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
