#!/usr/bin/env python3
"""Generate the parity fixtures in Tests/Fixtures/parity/ with Hugging Face transformers.

Each synthetic case is a small GPT-2 with seeded random weights, written as a Hugging Face
directory (config.json, generation_config.json, model.safetensors exactly as `save_pretrained`
writes it, keys post-processed where the case says so) plus the ground truth:

  ref.json          prompts (token ids), greedy continuations, config, dtype, key layout
  logits_last.f32   float32 LE, one row of vocab_size per prompt (logits at its last position)
  logits_all.f32    float32 LE, one row of vocab_size per position of prompt
                    `logits_all_prompt_index` (always 0)

The reference is "exact math on the stored weights": the saved checkpoint is loaded back with
transformers, upcast to float32 (`model.float()`), put in eval mode, and run in float32.
Greedy continuations come from `model.generate(do_sample=False)` with no EOS (generation is
never cut short: each greedy list has exactly min(16, n_positions - len(prompt)) tokens) and
are cross-checked against a plain argmax loop without KV cache.

Shakespeare (tests use the shared 64 MB model in /work/shared/models/shakespeare, which is not
copied): `parity/shakespeare/` has ref.json + logits for 3 prompts (logits_all for prompt 0),
and `parity/shakespeare-f16/` the same prompts computed from the model whose 2-D weight
matrices were rounded to float16 (`.half().float()`) and then run in float32, which is what a
runtime that stores f16 weights and computes in f32 sees.

Also cross-checks the pipeline against the shared tiny-f32 reference (max abs diff printed).

Usage: python3 tools/make_parity_fixtures.py [--out Tests/Fixtures/parity] [--shared /work/shared]
Deterministic: fixed seeds, one CPU thread.
"""
import argparse
import json
import math
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, GenerationConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()
torch.set_num_threads(1)

MAX_NEW_SYNTH = 16
MAX_NEW_SHAKESPEARE = 24
MIN_MARGIN = 0.01

# name, description, shape, source dtype, key layout, seed, init std
CASES = [
    dict(name="odd-heads",
         description="3 heads of 16 (n_embd 48), 3 layers; prompt 0 fills the whole context "
                     "(n_positions tokens, so greedy has 0 new tokens)",
         n_layer=3, n_head=3, n_embd=48, n_positions=24, vocab_size=300,
         dtype="F32", layout="hf", tied=True, seed=1001, init=0.35,
         prompt_lens=[24, 5, 11]),
    dict(name="f16-source",
         description="weights saved as float16 (model.half() before save_pretrained); "
                     "reference computed on the stored f16 values upcast to f32",
         n_layer=2, n_head=4, n_embd=32, n_positions=32, vocab_size=384,
         dtype="F16", layout="hf", tied=True, seed=1002, init=0.35,
         prompt_lens=[8, 1, 20]),
    dict(name="bf16-source",
         description="weights saved as bfloat16 (model.to(torch.bfloat16) before save_pretrained); "
                     "reference computed on the stored bf16 values upcast to f32",
         n_layer=2, n_head=4, n_embd=32, n_positions=32, vocab_size=384,
         dtype="BF16", layout="hf", tied=True, seed=1003, init=0.35,
         prompt_lens=[8, 3, 20]),
    dict(name="openai-keys",
         description="OpenAI layout: keys without the transformer. prefix, with h.N.attn.bias "
                     "([1,1,n_pos,n_pos] f32 causal tril) and h.N.attn.masked_bias (0-d f32 -1e4) "
                     "buffers, no lm_head.weight (tied); config.json also has n_ctx",
         n_layer=2, n_head=2, n_embd=24, n_positions=32, vocab_size=320,
         dtype="F32", layout="openai", tied=True, seed=1004, init=0.4,
         prompt_lens=[8, 2, 17]),
    dict(name="untied-head",
         description="tie_word_embeddings false: lm_head.weight is stored and differs from wte",
         n_layer=2, n_head=2, n_embd=24, n_positions=20, vocab_size=300,
         dtype="F32", layout="hf", tied=False, seed=1005, init=0.4,
         prompt_lens=[8, 1, 12]),
    dict(name="one-head",
         description="edge case: a single head of 32 and a single layer",
         n_layer=1, n_head=1, n_embd=32, n_positions=16, vocab_size=300,
         dtype="F32", layout="hf", tied=True, seed=1006, init=0.4,
         prompt_lens=[8, 1, 15]),
]

TORCH_DTYPE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def write_f32(path, arr):
    np.ascontiguousarray(np.asarray(arr, dtype="<f4")).tofile(path)


def load_model(path):
    """Load a checkpoint as a reader gets it: stored values upcast to float32, eval mode."""
    m = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager")
    return m.float().eval()


@torch.inference_mode()
def logits_of(model, ids):
    return model(torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()


@torch.inference_mode()
def greedy(model, ids, n_new):
    """model.generate greedy with no EOS; checked against a no-cache argmax loop.

    Returns (new token ids, smallest top1 - top2 logit margin along the path)."""
    if n_new == 0:
        return [], None
    gc = GenerationConfig(do_sample=False, max_new_tokens=n_new, min_new_tokens=0,
                          eos_token_id=None, bos_token_id=None, pad_token_id=None,
                          use_cache=True)
    # generate() merges None fields of gc with model.generation_config: clear EOS there too
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = None
    x = torch.tensor([ids], dtype=torch.long)
    out = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gc)
    new = out[0, len(ids):].tolist()
    if len(new) != n_new:
        raise SystemExit(f"generate returned {len(new)} tokens, expected {n_new}")
    seq = list(ids)
    margin = math.inf
    for t in new:
        last = logits_of(model, seq)[-1]
        top2 = np.sort(last)[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
        if int(np.argmax(last)) != t:
            raise SystemExit(f"generate/argmax mismatch at {len(seq)}: {t} vs {int(np.argmax(last))}")
        seq.append(t)
    return new, margin


def init_weights(model, cfg):
    """Seeded, non-trivial weights: every bias and LayerNorm parameter is perturbed so a
    runtime that drops one of them fails the test; scale chosen so logits are not flat."""
    g = torch.Generator().manual_seed(cfg["seed"])
    s = cfg["init"]
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_(1.0 + 0.15 * r if name.endswith("weight") else 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif name.endswith("c_proj.weight"):
                p.copy_(r * s / math.sqrt(2 * cfg["n_layer"]))
            else:  # wte, wpe, c_attn, c_fc, lm_head (untied)
                p.copy_(r * s)


def config_dict(c):
    return {k: getattr(c, k) for k in
            ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "layer_norm_epsilon")}


def make_case(cfg, out_root):
    name = cfg["name"]
    d = os.path.join(out_root, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    V = cfg["vocab_size"]
    conf = GPT2Config(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                      n_positions=cfg["n_positions"], vocab_size=V,
                      bos_token_id=V - 1, eos_token_id=V - 1,
                      tie_word_embeddings=cfg["tied"], initializer_range=cfg["init"])
    torch.manual_seed(cfg["seed"])
    model = GPT2LMHeadModel(conf).eval()
    init_weights(model, cfg)
    if not cfg["tied"]:
        assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    model = model.to(TORCH_DTYPE[cfg["dtype"]])
    model.save_pretrained(d, safe_serialization=True)

    bias_buffers = False
    if cfg["layout"] == "openai":
        # Rewrite as OpenAI's own checkpoint: no prefix, causal-mask buffers, no lm_head.
        sd = {}
        for k, v in model.state_dict().items():
            if k == "lm_head.weight":
                continue
            sd[k.removeprefix("transformer.")] = v.detach().clone().contiguous()
        n = cfg["n_positions"]
        for i in range(cfg["n_layer"]):
            sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n, dtype=torch.float32)).view(1, 1, n, n)
            sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4, dtype=torch.float32)
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json")) as f:
            cj = json.load(f)
        cj["n_ctx"] = n
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cj, f, indent=2, sort_keys=True)
            f.write("\n")
        bias_buffers = True

    # Reference: load back what was written, upcast, compute in f32.
    ref_model = load_model(d)
    if cfg["layout"] == "openai":
        # the loaded model must equal the in-memory one (keys mapped, buffers ignored)
        for (k1, v1), (k2, v2) in zip(sorted(ref_model.state_dict().items()),
                                      sorted(model.float().state_dict().items())):
            assert k1 == k2 and torch.equal(v1, v2), k1
    tied_loaded = ref_model.lm_head.weight.data_ptr() == ref_model.transformer.wte.weight.data_ptr()
    assert tied_loaded == cfg["tied"], (name, tied_loaded)

    # Random prompts; the first draw whose greedy paths keep a top-1/top-2 logit margin of at
    # least MIN_MARGIN, so exact greedy matches are robust to float rounding.
    for attempt in range(50):
        prompt_seed = cfg["seed"] + 7 + 1000 * attempt
        g = torch.Generator().manual_seed(prompt_seed)
        prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in cfg["prompt_lens"]]
        rows, greedy_ids, margins, n_new = [], [], [], []
        for p in prompts:
            lg = logits_of(ref_model, p)
            rows.append(lg[-1])
            k = min(MAX_NEW_SYNTH, cfg["n_positions"] - len(p))
            new, margin = greedy(ref_model, p, k)
            greedy_ids.append(new)
            margins.append(margin)
            n_new.append(k)
        if min(m for m in margins if m is not None) >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no prompt draw with greedy margin >= {MIN_MARGIN}")
    logits_all = logits_of(ref_model, prompts[0])
    assert np.allclose(logits_all[-1], rows[0], atol=1e-5)
    write_f32(os.path.join(d, "logits_last.f32"), np.stack(rows))
    write_f32(os.path.join(d, "logits_all.f32"), logits_all)
    ref = {
        "case": name,
        "description": cfg["description"],
        "config": config_dict(conf),
        "source_dtype": cfg["dtype"],
        "key_prefix": "" if cfg["layout"] == "openai" else "transformer.",
        "bias_buffers": bias_buffers,
        "tied": cfg["tied"],
        "prompts": prompts,
        "max_new_tokens": n_new,
        "greedy": greedy_ids,
        "greedy_min_margin": margins,
        "logits_last_file": "logits_last.f32",
        "logits_all_file": "logits_all.f32",
        "logits_all_prompt_index": 0,
        "generator": f"tools/make_parity_fixtures.py, transformers {transformers_version()}, "
                     f"torch {torch.__version__.split('+')[0]}, weight seed {cfg['seed']}, "
                     f"prompt seed {prompt_seed}",
    }
    write_json(os.path.join(d, "ref.json"), ref)
    return summary_row(name, d, ref, np.stack(rows), logits_all)


def transformers_version():
    import transformers
    return transformers.__version__


def write_json(path, obj):
    # compact lists of ids, one prompt per line
    text = json.dumps(obj, indent=1)
    with open(path, "w") as f:
        f.write(text + "\n")


def dir_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def summary_row(name, d, ref, last, all_):
    degenerate = [len(set(g)) <= 1 for g in ref["greedy"] if g]
    return (name, ref["source_dtype"], dir_size(d), float(np.abs(last).max()),
            float(np.abs(all_).max()), [len(g) for g in ref["greedy"]],
            "yes" if not all(degenerate) else "no",
            min(m for m in ref["greedy_min_margin"] if m is not None))


# ---------------------------------------------------------------- Shakespeare

def gpt2_encoding(shared):
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    tok = os.path.join(shared, "gpt2-tokenizer")
    ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(tok, "vocab.bpe"),
                                            os.path.join(tok, "encoder.json"))
    return tiktoken.Encoding(name="gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


SHAKESPEARE_TAIL_OFFSET = 1003854   # byte offset of the tail used for perplexity too
HELD_OUT_TOKEN = 304222             # first held-out token (last 10 %) of the full text's ids


def shakespeare_prompts(shared, enc):
    raw = open(os.path.join(shared, "corpus/tinyshakespeare.txt"), "rb").read()
    full = enc.encode_ordinary(raw.decode("utf-8"))
    # byte offset of the first held-out token, then the next speaker line after it
    held_byte = len(enc.decode_bytes(full[:HELD_OUT_TOKEN]))
    start = raw.index(b"\n\n", held_byte + 2048) + 2
    ids = enc.encode_ordinary(raw[start:start + 4096].decode("utf-8"))[:256]
    assert len(ids) == 256
    texts = ["ROMEO:", "First Citizen:\nBefore we proceed"]
    prompts = [enc.encode_ordinary(t) for t in texts] + [ids]
    info = [{"text": t} for t in texts]
    info.append({"text": enc.decode(ids), "source": "corpus/tinyshakespeare.txt",
                 "byte_offset": start,
                 "note": "first 256 tokens of encode_ordinary(text[byte_offset:byte_offset+4096]); "
                         "inside the held-out last 10 % (tokens >= 304222 of the whole file)"})
    return prompts, info


def round_matrices_f16(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:  # wte, wpe, c_attn/c_proj/c_fc weights (lm_head is wte)
                p.copy_(p.half().float())


def make_shakespeare(shared, out_root, enc):
    src = os.path.join(shared, "models/shakespeare")
    prompts, info = shakespeare_prompts(shared, enc)
    rows_out = []
    for variant in ("shakespeare", "shakespeare-f16"):
        model = load_model(src)
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
        if variant == "shakespeare-f16":
            round_matrices_f16(model)
        d = os.path.join(out_root, variant)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        n_pos = model.config.n_positions
        rows, greedy_ids, margins, n_new = [], [], [], []
        for p in prompts:
            rows.append(logits_of(model, p)[-1])
            k = min(MAX_NEW_SHAKESPEARE, n_pos - len(p))
            new, margin = greedy(model, p, k)
            greedy_ids.append(new)
            margins.append(margin)
            n_new.append(k)
        write_f32(os.path.join(d, "logits_last.f32"), np.stack(rows))
        ref = {
            "case": variant,
            "description": (
                "the shared trained model /work/shared/models/shakespeare (f32), not copied here"
                if variant == "shakespeare" else
                "the shared shakespeare model with its 2-D weight matrices (wte, wpe, "
                "attn.c_attn/c_proj, mlp.c_fc/c_proj weights; not biases, not LayerNorm) rounded "
                "to float16 (round-to-nearest-even, .half().float()), then computed in float32; "
                "lm_head is tied to the rounded wte"),
            "model_dir": "models/shakespeare (relative to the shared folder)",
            "config": config_dict(model.config),
            "source_dtype": "F32" if variant == "shakespeare" else "F16",
            "key_prefix": "transformer.",
            "bias_buffers": False,
            "tied": True,
            "prompt_texts": info,
            "tokenizer": "GPT-2 BPE (tiktoken r50k pattern, encode_ordinary)",
            "prompts": prompts,
            "max_new_tokens": n_new,
            "greedy": greedy_ids,
            "greedy_text": [enc.decode(g) for g in greedy_ids],
            "greedy_min_margin": margins,
            "logits_last_file": "logits_last.f32",
            "generator": f"tools/make_parity_fixtures.py, transformers {transformers_version()}, "
                         f"torch {torch.__version__.split('+')[0]}",
        }
        last = np.stack(rows)
        all_ = last
        if variant == "shakespeare":
            all_ = logits_of(model, prompts[0])
            # The last row equals row 0 of logits_last.f32: not stored twice (fixture budget).
            assert np.array_equal(all_[-1], last[0])
            write_f32(os.path.join(d, "logits_all.f32"), all_[:-1])
            ref["logits_all_file"] = "logits_all.f32"
            ref["logits_all_rows"] = len(all_) - 1
            ref["logits_all_note"] = "all rows of prompt 0 but the last, which is row 0 of logits_last.f32"
            ref["logits_all_prompt_index"] = 0
        write_json(os.path.join(d, "ref.json"), ref)
        rows_out.append(summary_row(variant, d, ref, last, all_))
    return rows_out


def shakespeare_f16_gap(shared, out_root):
    a = np.fromfile(os.path.join(out_root, "shakespeare/logits_last.f32"), "<f4")
    b = np.fromfile(os.path.join(out_root, "shakespeare-f16/logits_last.f32"), "<f4")
    return float(np.abs(a - b).max())


# ---------------------------------------------------------------- cross-check

def cross_check(shared):
    d = os.path.join(shared, "reference/tiny-f32")
    ref = json.load(open(os.path.join(d, "ref.json")))
    V = ref["config"]["vocab_size"]
    exp_last = np.fromfile(os.path.join(d, "logits_last.f32"), "<f4").reshape(-1, V)
    exp_all = np.fromfile(os.path.join(d, "logits_first_prompt.f32"), "<f4").reshape(-1, V)
    model = load_model(d)
    diff_last = max(float(np.abs(logits_of(model, p)[-1] - exp_last[i]).max())
                    for i, p in enumerate(ref["prompts"]))
    diff_all = float(np.abs(logits_of(model, ref["prompts"][0]) - exp_all).max())
    same_greedy = all(greedy(model, p, len(g))[0] == g
                      for p, g in zip(ref["prompts"], ref["greedy"]))
    return diff_last, diff_all, same_greedy, float(np.abs(exp_last).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/parity")
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--skip-shakespeare", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rows = [make_case(c, a.out) for c in CASES]
    if not a.skip_shakespeare:
        enc = gpt2_encoding(a.shared)
        rows += make_shakespeare(a.shared, a.out, enc)
    print("| case | dtype | bytes | max abs logit (last) | max abs logit (all) | new tokens | non-degenerate greedy | min greedy margin |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.4f} | {r[5]} | {r[6]} | {r[7]:.4g} |")
    total = sum(dir_size(os.path.join(a.out, x)) for x in os.listdir(a.out))
    print(f"total parity fixture bytes: {total}")
    if not a.skip_shakespeare:
        print(f"shakespeare f32 vs f16-rounded weights, max abs logit diff: "
              f"{shakespeare_f16_gap(a.shared, a.out):.3g}")
    dl, da, sg, mx = cross_check(a.shared)
    print(f"cross-check vs shared reference/tiny-f32: max abs diff logits_last {dl:.3g}, "
          f"logits_first_prompt {da:.3g} (max |logit| {mx:.3g}); greedy identical: {sg}")


if __name__ == "__main__":
    sys.exit(main())
