#!/usr/bin/env python3
"""Reference perplexities computed with Hugging Face transformers -> Tests/Fixtures/perplexity/.

Token ids: GPT-2 BPE (tiktoken, built offline from /work/shared/gpt2-tokenizer), encode_ordinary
(no special tokens). Models run in float32, eval mode; log-softmax in float64 from the float32
logits; sums in float64.

Methods (the Swift side implements exactly these definitions):

chunks  (llama.cpp llama-perplexity), context C:
        n_chunks = len(tokens) // C; chunk k is tokens[k*C:(k+1)*C], one forward pass each;
        first = C // 2; positions j in [first, C-1) score window[j+1] under the logits at j.
        N = n_chunks * (C - 1 - first).
sliding (Hugging Face "perplexity of fixed-length models"), max_length L, stride S:
        prev_end = 0; for begin in range(0, len(tokens), S): end = min(begin + L, len(tokens));
        trg_len = end - prev_end; window = tokens[begin:end]; score window indices
        i >= len(window) - trg_len, i > 0, each as NLL of window[i] under the logits at i-1;
        prev_end = end; stop after the window with end == len(tokens).
Both: mean_nll = total NLL / N, ppl = exp(mean_nll), and llama.cpp's standard error
        sd_mean = sqrt((mean(NLL^2) - mean_nll^2) / (N - 1)), ppl_se = ppl * sd_mean.

Writes reference.json and shakespeare-tail16k.u16 (uint16 LE token ids); the wiki ids are the
first 16,384 of ../tokenizer/wiki.test.ids.u16 (checked, not written twice).
Cases: models tiny-f32 (n_ctx 64) and shakespeare (n_ctx 256) x texts wiki (first 16384 ids
of wiki.test.raw) and shakespeare-tail (first 16384 ids of tinyshakespeare.txt[1003854:]) x
methods chunks (C = n_ctx) and sliding (L = n_ctx, S = n_ctx / 2). Plus, for the README, the
shakespeare model on the full texts (section "full_text", not for tests; --skip-full omits it,
it takes ~15 min on 2 cores).

Usage: python3 tools/perplexity_reference.py [--out Tests/Fixtures/perplexity] [--skip-full]
       [--verify-hf]   (also recompute "sliding" the way the HF doc does, labels=-100, as a check)
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

N_TOKENS = 16384
TAIL_OFFSET = 1003854
BATCH = 8


def gpt2_encoding(shared):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    tok = os.path.join(shared, "gpt2-tokenizer")
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(tok, "vocab.bpe"),
                                            os.path.join(tok, "encoder.json"))
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def load_model(path):
    m = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager")
    return m.float().eval()


@torch.inference_mode()
def score_windows(model, windows):
    """windows: list of (ids, [(pred_pos, target_id), ...]) with equal-length ids within a batch
    call. Returns the NLLs (float64 numpy) in order."""
    out = []
    # group consecutive windows of equal length into batches
    i = 0
    while i < len(windows):
        j = i
        while j < len(windows) and j - i < BATCH and len(windows[j][0]) == len(windows[i][0]):
            j += 1
        batch = windows[i:j]
        x = torch.tensor([w[0] for w in batch], dtype=torch.long)
        logits = model(x).logits  # float32 [B, T, V]
        for b, (_, targets) in enumerate(batch):
            if not targets:
                continue
            pos = torch.tensor([p for p, _ in targets])
            tgt = torch.tensor([t for _, t in targets])
            lp = torch.log_softmax(logits[b, pos].double(), dim=-1)
            out.append((-lp[torch.arange(len(tgt)), tgt]).numpy())
        i = j
    return np.concatenate(out) if out else np.zeros(0)


def chunk_windows(tokens, C):
    first = C // 2
    wins = []
    for k in range(len(tokens) // C):
        w = tokens[k * C:(k + 1) * C]
        wins.append((w, [(j, w[j + 1]) for j in range(first, C - 1)]))
    return wins


def sliding_windows(tokens, L, S):
    wins = []
    prev_end = 0
    n = len(tokens)
    for begin in range(0, n, S):
        end = min(begin + L, n)
        trg_len = end - prev_end
        w = tokens[begin:end]
        start = max(len(w) - trg_len, 1)
        wins.append((w, [(i - 1, w[i]) for i in range(start, len(w))]))
        prev_end = end
        if end == n:
            break
    return wins


def stats(nll):
    N = len(nll)
    m = float(np.sum(nll, dtype=np.float64) / N)
    m2 = float(np.sum(nll * nll, dtype=np.float64) / N)
    ppl = math.exp(m)
    sd_mean = math.sqrt((m2 - m * m) / (N - 1))
    return {"n_scored": N, "ppl": ppl, "ppl_se": ppl * sd_mean, "mean_nll": m}


def run(model, tokens, method, n_ctx):
    if method == "chunks":
        params = {"C": n_ctx, "first": n_ctx // 2, "n_chunks": len(tokens) // n_ctx}
        wins = chunk_windows(tokens, n_ctx)
    else:
        params = {"L": n_ctx, "S": n_ctx // 2}
        wins = sliding_windows(tokens, n_ctx, n_ctx // 2)
        params["n_windows"] = len(wins)
    nll = score_windows(model, wins)
    return params, stats(nll)


@torch.inference_mode()
def hf_doc_sliding(model, tokens, L, S):
    """The HF doc loop verbatim (labels with -100, model's own loss) -> ppl."""
    ids = torch.tensor([tokens])
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    seq_len = ids.size(1)
    for begin in range(0, seq_len, S):
        end = min(begin + L, seq_len)
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        loss = model(input_ids, labels=target_ids).loss
        # the loss is the mean over the shifted labels target_ids[:, 1:] that are not -100
        # (the doc's `(target_ids != -100).sum() - 1` undercounts by one after the first window)
        num_valid = (target_ids[:, 1:] != -100).sum().item()
        nll_sum += loss.double().item() * num_valid
        n_tokens += num_valid
        prev_end = end
        if end == seq_len:
            break
    return math.exp(nll_sum / n_tokens), n_tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/perplexity")
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--verify-hf", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    enc = gpt2_encoding(a.shared)

    wiki_raw = open(os.path.join(a.shared, "corpus/wiki.test.raw"), "rb").read()
    shk_raw = open(os.path.join(a.shared, "corpus/tinyshakespeare.txt"), "rb").read()
    wiki_all = enc.encode_ordinary(wiki_raw.decode("utf-8"))
    tail_all = enc.encode_ordinary(shk_raw[TAIL_OFFSET:].decode("utf-8"))
    texts = {
        "wiki": {"ids": wiki_all[:N_TOKENS], "file": "../tokenizer/wiki.test.ids.u16",
                 "source": "corpus/wiki.test.raw", "byte_offset": 0,
                 "source_token_count": len(wiki_all)},
        "shakespeare-tail": {"ids": tail_all[:N_TOKENS], "file": "shakespeare-tail16k.u16",
                             "source": "corpus/tinyshakespeare.txt", "byte_offset": TAIL_OFFSET,
                             "source_token_count": len(tail_all)},
    }
    texts_json = {}
    for name, t in texts.items():
        assert max(t["ids"]) < 65536
        if t["file"].startswith("../"):
            # Shared with the tokenizer fixture (fixture budget): check it holds these ids first.
            have = np.fromfile(os.path.join(a.out, t["file"]), dtype="<u2")[:len(t["ids"])]
            assert list(have) == list(t["ids"]), t["file"]
        else:
            np.asarray(t["ids"], dtype="<u2").tofile(os.path.join(a.out, t["file"]))
        texts_json[name] = {
            "file": t["file"], "dtype": "uint16 LE", "n_tokens": len(t["ids"]),
            "source": t["source"], "byte_offset": t["byte_offset"],
            "source_bytes_to_end": True,
            "source_token_count": t["source_token_count"],
            "token_range": [0, len(t["ids"])],
            "bytes_covered": len(enc.decode_bytes(t["ids"])),
            "tokenizer": "GPT-2 BPE, tiktoken r50k pattern, encode_ordinary (no special tokens) "
                         "of the UTF-8 text from byte_offset to the end of the file",
        }

    models = {"tiny-f32": os.path.join(a.shared, "reference/tiny-f32"),
              "shakespeare": os.path.join(a.shared, "models/shakespeare")}
    results, full = [], []
    hf_checks = []
    for mname, mpath in models.items():
        model = load_model(mpath)
        n_ctx = model.config.n_positions
        for tname, t in texts.items():
            for method in ("chunks", "sliding"):
                t0 = time.time()
                params, st = run(model, t["ids"], method, n_ctx)
                r = {"model": mname, "text": tname, "method": method, "params": params, **st}
                results.append(r)
                print(f"{mname:12s} {tname:17s} {method:8s} N={st['n_scored']:6d} "
                      f"ppl={st['ppl']:.4f} ± {st['ppl_se']:.4f} ({time.time() - t0:.1f}s)",
                      flush=True)
                if a.verify_hf and method == "sliding":
                    ppl_hf, n_hf = hf_doc_sliding(model, t["ids"], n_ctx, n_ctx // 2)
                    hf_checks.append({"model": mname, "text": tname, "ppl_hf_doc_loop": ppl_hf,
                                      "n_scored": n_hf,
                                      "rel_diff": abs(ppl_hf - st["ppl"]) / st["ppl"]})
                    print(f"   HF doc loop: ppl={ppl_hf:.6f} N={n_hf} rel diff "
                          f"{hf_checks[-1]['rel_diff']:.2e}", flush=True)
        if mname == "shakespeare" and not a.skip_full:
            for tname, ids in (("wiki", wiki_all), ("shakespeare-tail", tail_all)):
                for method in ("chunks", "sliding"):
                    t0 = time.time()
                    params, st = run(model, ids, method, n_ctx)
                    full.append({"model": mname, "text": tname + "-full", "n_tokens": len(ids),
                                 "method": method, "params": params, **st})
                    print(f"{mname:12s} {tname + '-full':22s} {method:8s} N={st['n_scored']:6d} "
                          f"ppl={st['ppl']:.4f} ± {st['ppl_se']:.4f} ({time.time() - t0:.1f}s)",
                          flush=True)

    import transformers
    ref = {
        "description": "perplexity references computed by tools/perplexity_reference.py with "
                       "Hugging Face transformers (float32 forward, eval; float64 log-softmax "
                       "and sums). See the script docstring for the exact method definitions.",
        "generator": f"transformers {transformers.__version__}, torch {torch.__version__.split('+')[0]}",
        "methods": {
            "chunks": "llama.cpp: n_chunks = len // C, window k = tokens[kC:(k+1)C], score "
                      "j in [C//2, C-1): NLL(window[j+1] | logits[j]); N = n_chunks*(C-1-C//2)",
            "sliding": "HF doc: begin in range(0, len, S), end = min(begin+L, len), trg_len = "
                       "end - prev_end, score window indices i >= len(window)-trg_len and i > 0 "
                       "as NLL(window[i] | logits[i-1]); prev_end = end; break at end == len",
            "ppl": "exp(mean NLL)",
            "ppl_se": "ppl * sqrt((mean(NLL^2) - mean(NLL)^2) / (N - 1))",
        },
        "models": {"tiny-f32": {"dir": "reference/tiny-f32 (shared)", "n_ctx": 64},
                   "shakespeare": {"dir": "models/shakespeare (shared)", "n_ctx": 256}},
        "texts": texts_json,
        "results": results,
    }
    if full:
        ref["full_text"] = full
    if hf_checks:
        ref["hf_doc_loop_check"] = hf_checks
    if a.skip_full:
        # keep the full-text numbers of a previous complete run
        old = os.path.join(a.out, "reference.json")
        if os.path.exists(old):
            prev = json.load(open(old))
            if "full_text" in prev:
                ref["full_text"] = prev["full_text"]
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
