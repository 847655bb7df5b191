#!/usr/bin/env python3
"""tiktoken throughput on the same inputs as the Swift benchmark (BenchmarkTests.testBenchmarkEncode).

Single thread, encode_ordinary, best of N runs. Inputs: ../shared/corpus/tinyshakespeare.txt,
../shared/corpus/wiki.test.raw (read as bytes, decoded as UTF-8, CRLF kept) and the 1 MB
pathological strings of Tests/Fixtures/tokenizer/manifest.json (rebuilt from their recipes).

Usage: python3 tools/tokenizer_bench.py [--runs 5]
"""
import argparse
import os
import time

from tokenizer_reference import HERE, PATHOLOGICAL, build_encoding


def best_of(runs, fn):
    best = float("inf")
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = "1"
    t = time.perf_counter()
    enc = build_encoding(os.path.join(args.shared, "gpt2-tokenizer"))
    print(f"tiktoken load (data_gym files): {(time.perf_counter() - t) * 1000:.1f} ms")
    for name, fname in [("tinyshakespeare", "tinyshakespeare.txt"), ("wiki.test", "wiki.test.raw")]:
        with open(os.path.join(args.shared, "corpus", fname), "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
        secs, ids = best_of(args.runs, lambda: enc.encode_ordinary(text))
        print(f"{name}: {len(data)} bytes -> {len(ids)} tokens, {secs * 1000:.1f} ms, {len(data) / secs / 1e6:.2f} MB/s")
    for name, (_, text) in sorted(PATHOLOGICAL.items()):
        n = len(text.encode("utf-8"))
        secs, ids = best_of(max(1, args.runs // 2), lambda: enc.encode_ordinary(text))
        print(f"{name}: {n} bytes -> {len(ids)} tokens, {secs * 1000:.1f} ms, {n / secs / 1e6:.2f} MB/s")
    for n in [100_000, 1_000_000]:
        text = "a" * n
        secs, _ = best_of(3, lambda: enc.encode_ordinary(text))
        print(f"\"a\" x {n}: {secs * 1000:.1f} ms")


if __name__ == "__main__":
    main()
