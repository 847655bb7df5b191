#!/usr/bin/env python3
"""PyTorch's training step on the shapes of `g2w-train --bench`, for the side-by-side figure.

CPU, float32, eager, no dropout, the same thread count; GPT2LMHeadModel (transformers) with a tied
head, GPT-2 init; one step = zero_grad, forward, cross-entropy (mean), backward,
clip_grad_norm_(1.0), AdamW (decay on rank >= 2, nanoGPT's grouping). One warm-up step, then
--steps timed steps on random tokens; prints ms/step, tokens/s and FLOP/s counted like g2w's
benchmark (6 x matrix params x tokens + causal attention).

Usage: python3 tools/bench_train_pytorch.py [--threads 2] [--steps 5] [--shape gpt2|shakespeare|all] [--json]
"""
import argparse, json, resource, statistics, time
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {
    "gpt2": dict(name="gpt2-124M", n_layer=12, n_head=12, n_embd=768, n_ctx=1024, B=4, T=64),
    "shakespeare": dict(name="shakespeare-4L256", n_layer=4, n_head=4, n_embd=256, n_ctx=256, B=16, T=128),
}
V = 50257


def flops(s):
    E, L, B, T = s["n_embd"], s["n_layer"], s["B"], s["T"]
    matrix = L * (4 * E * E + 2 * E * 4 * E) + V * E
    return 6 * matrix * B * T + 6 * L * B * T * (T + 1) * E


def bench(s, steps):
    cfg = GPT2Config(vocab_size=V, n_positions=s["n_ctx"], n_embd=s["n_embd"], n_layer=s["n_layer"], n_head=s["n_head"],
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(1)
    model = GPT2LMHeadModel(cfg)
    model.train()
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    B, T = s["B"], s["T"]
    times = []
    for i in range(steps + 1):
        x = torch.randint(0, V, (B, T)); y = torch.randint(0, V, (B, T))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(x).logits
        loss = F.cross_entropy(logits.view(-1, V), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t0)
    m = statistics.mean(times)
    return {"shape": s["name"], "threads": torch.get_num_threads(), "ms_per_step": m * 1e3,
            "sd_ms": (statistics.stdev(times) if len(times) > 1 else 0) * 1e3, "samples_ms": [t * 1e3 for t in times],
            "tok_s": B * T / m, "gflops": flops(s) / m / 1e9,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--shape", default="all", choices=["gpt2", "shakespeare", "all"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = ["gpt2", "shakespeare"] if a.shape == "all" else [a.shape]
    results = [bench(SHAPES[n], a.steps) for n in names]
    if a.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['shape']}: {r['ms_per_step']:.0f} +- {r['sd_ms']:.0f} ms/step, {r['tok_s']:.0f} tok/s, {r['gflops']:.1f} GFLOP/s "
                  f"(torch {r['torch']}, {r['threads']} threads)")


if __name__ == "__main__":
    main()
