#!/usr/bin/env python3
"""Tokenize a text file with GPT-2's tokenizer into llm.c token files, split by tokens.

Writes OUT_train.bin and OUT_val.bin in llm.c's format (256 little-endian int32 header: magic
20240520, version 1, token count; then uint16 tokens), the first `1 - F` of the token ids for
training and the rest for validation (`int((1 - F) * len(ids))`, as the PyTorch project behind
../shared/models/shakespeare split its 338,025 tokens into 304,222 + 33,803). `g2w-train --train
OUT_train.bin --val OUT_val.bin` then trains on exactly that split.

Usage: python3 tools/make_llmc_tokens.py TEXT OUT_PREFIX [--val-split 0.1]
       [--tokenizer ../shared/models/shakespeare]  (a directory transformers' AutoTokenizer loads)
"""
import argparse, os, struct, sys


def write(path, ids):
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, len(ids), *([0] * 253)))
        f.write(struct.pack("<%dH" % len(ids), *ids))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("out_prefix")
    ap.add_argument("--val-split", type=float, default=0.1)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--tokenizer", default=os.path.join(here, "..", "..", "shared", "models", "shakespeare"))
    a = ap.parse_args()
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    text = open(a.text, encoding="utf-8", newline="").read()
    ids = tok.encode(text)
    cut = int((1 - a.val_split) * len(ids))
    write(a.out_prefix + "_train.bin", ids[:cut])
    write(a.out_prefix + "_val.bin", ids[cut:])
    print(f"tokens {len(ids)} train {cut} val {len(ids) - cut}")


if __name__ == "__main__":
    sys.exit(main())
