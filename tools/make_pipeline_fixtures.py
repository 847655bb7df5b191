#!/usr/bin/env python3
"""The whole g2w-train pipeline, replayed with PyTorch + transformers in float64 (issue 15).

Text file in (Tests/Fixtures/training/shakespeare-6k.txt: the first 6,000 characters of Tiny
Shakespeare), the last F of its characters held out (Python's `text[:int((1-F)*len(text))]`),
both parts tokenized with GPT-2's tokenizer (transformers, the shared Shakespeare model's
tokenizer.json), windows of N tokens every S tokens (`for i in range(0, len(ids) - N, S)`), no
shuffling: micro-batch j holds windows jB..jB+B-1, the last incomplete batch of an epoch dropped,
epochs cycled; one step = K micro-batches each weighted 1/K; nanoGPT's warmup + cosine schedule;
AdamW (decay on rank >= 2); clipping; then the validation loss over every full validation batch
(windows of N, stride N, in order; mean of the batch means).

The starting weights are generated with SplitMix64 exactly as the Swift tests' randomBlock, so
no weights are stored. Output: Tests/Fixtures/training/pipeline-NAME.json with the recipe, the
loss of every step and the final validation loss.
Usage: python3 tools/make_pipeline_fixtures.py
"""
import json, math, os, sys
import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_training_fixtures import generated_weights, build_model, schema, param_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "training")
TEXT = os.path.join(OUT, "shakespeare-6k.txt")
TOKENIZER = os.path.join(ROOT, "..", "shared", "models", "shakespeare")


def nanogpt_lr(it, lr, min_lr, warmup, decay):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def run(name, c, untied, seed, r):
    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    text = open(TEXT, encoding="utf-8", newline="").read()
    cut = int((1 - r["val_split"]) * len(text))
    train_ids, val_ids = tok.encode(text[:cut]), tok.encode(text[cut:])
    N, S, B, K = r["ctx"], r.get("stride") or r["ctx"], r["batch"], r["grad_accum"]
    wins = [(train_ids[i:i + N], train_ids[i + 1:i + N + 1]) for i in range(0, len(train_ids) - N, S)]
    per_epoch = len(wins) // B
    batches = [wins[j * B:(j + 1) * B] for j in range(per_epoch)]
    steps = r["max_steps"] if r.get("max_steps") else r["epochs"] * (per_epoch // K)
    decay = r.get("decay_steps") or steps
    model = build_model(c, untied, generated_weights(c, untied, seed))
    sch = schema(c, untied)
    params = [param_of(model, n) for n, _ in sch]
    opt = torch.optim.AdamW([{"params": [p for (n, s), p in zip(sch, params) if len(s) >= 2], "weight_decay": r["weight_decay"]},
                             {"params": [p for (n, s), p in zip(sch, params) if len(s) < 2], "weight_decay": 0.0}],
                            lr=r["lr"], betas=(r["beta1"], r["beta2"]), eps=1e-8, foreach=False)
    losses, micro = [], 0
    for step in range(steps):
        lr = nanogpt_lr(step, r["lr"], r["min_lr"], r["warmup"], decay)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total = 0.0
        for _ in range(K):
            b = batches[micro % per_epoch]
            micro += 1
            x = torch.tensor([w[0] for w in b]); y = torch.tensor([w[1] for w in b])
            logits = model(x).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            (loss / K).backward()
            total += loss.item() / K
        torch.nn.utils.clip_grad_norm_(params, r["grad_clip"])
        opt.step()
        losses.append(total)
    vwins = [(val_ids[i:i + N], val_ids[i + 1:i + N + 1]) for i in range(0, len(val_ids) - N, N)]
    vb = [vwins[j * B:(j + 1) * B] for j in range(len(vwins) // B)]
    with torch.no_grad():
        vl = []
        for b in vb:
            logits = model(torch.tensor([w[0] for w in b])).logits
            vl.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor([w[1] for w in b]).reshape(-1)).item())
    doc = {"model": c, "untied_head": untied, "splitmix64_seed": seed, "recipe": r, "train_tokens": len(train_ids), "val_tokens": len(val_ids),
           "train_windows": len(wins), "steps": steps, "losses": losses, "final_val_loss": sum(vl) / len(vl), "val_batches": len(vb),
           "generated_by": f"tools/make_pipeline_fixtures.py, torch {torch.__version__}, float64"}
    with open(os.path.join(OUT, f"pipeline-{name}.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"{name}: {len(train_ids)} train / {len(val_ids)} val tokens, {len(wins)} windows, {steps} steps, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, val {doc['final_val_loss']:.4f} over {len(vb)} batches")


def main():
    base = {"val_split": 0.1, "batch": 4, "grad_accum": 2, "lr": 3e-3, "min_lr": 3e-4, "warmup": 2, "weight_decay": 0.1,
            "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0}
    run("tied", {"n_layer": 2, "n_head": 2, "n_embd": 8, "n_inner": 32, "n_ctx": 32, "vocab_size": 50257}, False, 303,
        dict(base, ctx=16, stride=12, epochs=2))
    run("untied", {"n_layer": 1, "n_head": 4, "n_embd": 12, "n_inner": 48, "n_ctx": 24, "vocab_size": 50257}, True, 404,
        dict(base, ctx=20, max_steps=12, decay_steps=10))


if __name__ == "__main__":
    main()
