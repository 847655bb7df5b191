#!/usr/bin/env python3
"""Time Hugging Face transformers on CPU for a GPT-2 checkpoint (baseline for issue 6).

Tests, in the spirit of llama-bench:
  pp<N>  prompt processing: one forward pass over N random token ids with an empty KV cache
         (use_cache=True, logits_to_keep=1 so only the last position's logits are computed, as
         llama.cpp does); tok/s = N / time.
  tg<N>  generation: model.generate, greedy, min_new_tokens = max_new_tokens = N, KV cache, from
         a 1-token prompt, so the N forward passes are N single-token decode steps and no prompt
         is processed besides that one token; tok/s = N / time.
Each test: one untimed warm-up, then --reps timed runs; mean ± sample sd, median and best of
tok/s. The machine must be quiet: with 2 threads on 2 cores, any other busy process (a swift
build) slows decode steps several-fold (OpenMP threads wait on each other), so compare
the "best" column when the load average was not ~0.
dtypes: f32, and f16 (model.half(), torch float16 on CPU) if the forward pass runs; otherwise
the row says "unsupported". bf16 can be added with --dtypes f32,f16,bf16.
torch.set_num_threads(--threads), eval mode, torch.inference_mode.

Usage: python3 tools/bench_transformers.py --model tools/out/gpt2-124M [--threads 2]
       [--pp 512] [--tg 128] [--reps 3] [--dtypes f32,f16] [--json out.json]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from transformers import GPT2LMHeadModel, GenerationConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@torch.inference_mode()
def time_pp(model, ids):
    t0 = time.perf_counter()
    model(ids, use_cache=True, logits_to_keep=1)
    return time.perf_counter() - t0


@torch.inference_mode()
def time_tg(model, first, n):
    gc = GenerationConfig(do_sample=False, max_new_tokens=n, min_new_tokens=n, use_cache=True,
                          eos_token_id=None, pad_token_id=0, bos_token_id=None)
    t0 = time.perf_counter()
    out = model.generate(first, attention_mask=torch.ones_like(first), generation_config=gc)
    dt = time.perf_counter() - t0
    assert out.shape[1] == first.shape[1] + n, out.shape
    return dt


def stats(rates):
    mean = statistics.fmean(rates)
    sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
    return mean, sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtypes", default="f32,f16")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    base = GPT2LMHeadModel.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    base.eval()
    base.generation_config.eos_token_id = None
    n_params = sum(p.numel() for p in base.parameters())
    V = base.config.vocab_size
    pp_ids = torch.randint(0, V - 1, (1, a.pp))
    first = torch.randint(0, V - 1, (1, 1))
    rows = []
    for dname in a.dtypes.split(","):
        model = base
        if dname != "f32":
            model = GPT2LMHeadModel.from_pretrained(a.model, dtype=torch.float32,
                                                    attn_implementation="sdpa").to(DTYPES[dname])
            model.eval()
            model.generation_config.eos_token_id = None
        for test, n in (("pp", a.pp), ("tg", a.tg)):
            row = {"model": os.path.basename(os.path.normpath(a.model)), "params": n_params,
                   "dtype": dname, "threads": a.threads, "test": f"{test}{n}"}
            try:
                fn = (lambda: time_pp(model, pp_ids)) if test == "pp" else \
                     (lambda: time_tg(model, first, n))
                fn()  # warm-up
                rates = [n / fn() for _ in range(a.reps)]
                row["tok_s_mean"], row["tok_s_sd"] = stats(rates)
                row["tok_s_median"] = statistics.median(rates)
                row["tok_s_best"] = max(rates)
                row["tok_s_runs"] = rates
            except (RuntimeError, NotImplementedError) as e:
                row["unsupported"] = str(e).splitlines()[0][:120]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if dname != "f32":
            del model

    import transformers
    meta = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_name(), "torch": torch.__version__,
            "transformers": transformers.__version__, "threads": a.threads, "reps": a.reps}
    print(f"transformers {meta['transformers']}, torch {meta['torch']}, {meta['cpu']}, "
          f"{a.threads} threads, {a.reps} reps, {meta['date']}")
    print()
    print("| model | params | dtype | test | t/s mean ± sd | median | best |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        if "tok_s_mean" in r:
            val = (f"{r['tok_s_mean']:.2f} ± {r['tok_s_sd']:.2f} | {r['tok_s_median']:.2f} | "
                   f"{r['tok_s_best']:.2f}")
        else:
            val = f"unsupported ({r['unsupported']}) | | "
        print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['dtype']} | {r['test']} | {val} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
