#!/usr/bin/env python3
"""References for the training engine (issue 14), computed by PyTorch + transformers in float64.

For each model: the loss, logits and every parameter's gradient at step 0, then 10 AdamW steps
(gradient clipping active, gradient accumulation over micro-batches, a learning rate that changes
per step) with the loss and gradient norm of every step and the final parameters.

Models (GPT2LMHeadModel, dropout off):
  tied-odd    2 layers, 3 heads of 4, n_embd 12, n_inner 20, vocab 53, n_ctx 9, tied head
  untied-odd  1 layer, 2 heads of 5, n_embd 10, vocab 37, n_ctx 8, separate LM head
  gpt2-vocab  Tests/Fixtures/tiny-f32 (2 layers, 4 heads, n_embd 64, GPT-2's 50,257-token vocabulary)
The two small models' weights are not stored: both this script and the Swift tests generate them
with SplitMix64 (seed in the JSON), in the .g2w schema order and layout. Their arrays are stored
whole. The 50,257-token model's arrays are large, so for each tensor the fixture keeps 32 sampled
elements (indices in the JSON), its largest |value| and its sum of squares; its logits are kept
for 64 sampled vocabulary entries of every position, with each row's max and logsumexp.

Output: Tests/Fixtures/training/NAME.json (everything small) + NAME.f32 (arrays, little-endian).
Usage: python3 tools/make_training_fixtures.py   (torch, transformers, safetensors, numpy)
"""
import json, math, os, struct
import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "training")
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed): self.state = seed & MASK
    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)
    def uniform(self):  # as the Swift tests: Float(Double(x >> 11) / 2^53 * 2 - 1)
        return np.float32((self.next() >> 11) / float(1 << 53) * 2 - 1)
    def int(self, n): return self.next() % n


LAYER = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
         "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
CONV1D = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}


def schema(c, untied):
    """(g2w name, g2w shape) in file order; matrices [out, in]."""
    E, I = c["n_embd"], c["n_inner"]
    out = [("wte.weight", [c["vocab_size"], E]), ("wpe.weight", [c["n_ctx"], E])]
    shapes = {"attn.c_attn.weight": [3 * E, E], "attn.c_attn.bias": [3 * E], "attn.c_proj.weight": [E, E],
              "mlp.c_fc.weight": [I, E], "mlp.c_fc.bias": [I], "mlp.c_proj.weight": [E, I]}
    for l in range(c["n_layer"]):
        for s in LAYER:
            out.append((f"h.{l}.{s}", shapes.get(s, [E])))
    out += [("ln_f.weight", [E]), ("ln_f.bias", [E])]
    if untied:
        out.append(("lm_head.weight", [c["vocab_size"], E]))
    return out


def generated_weights(c, untied, seed):
    """The Swift tests' randomBlock: matrices 0.1 U, LayerNorm weights 1 + 0.2 U, vectors 0.05 U (float32 arithmetic)."""
    r = SplitMix64(seed)
    w = {}
    for name, shape in schema(c, untied):
        n = int(np.prod(shape))
        norm = name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight"
        vals = np.empty(n, dtype=np.float32)
        for i in range(n):
            u = r.uniform()
            vals[i] = np.float32(1) + np.float32(0.2) * u if norm else (np.float32(0.1) if len(shape) == 2 else np.float32(0.05)) * u
        w[name] = vals.reshape(shape)
    return w


def hf_name(name):
    return name if name == "lm_head.weight" else "transformer." + name


def build_model(c, untied, weights):
    cfg = GPT2Config(vocab_size=c["vocab_size"], n_positions=c["n_ctx"], n_embd=c["n_embd"], n_layer=c["n_layer"], n_head=c["n_head"],
                     n_inner=c["n_inner"], activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     layer_norm_epsilon=1e-5, tie_word_embeddings=not untied)
    model = GPT2LMHeadModel(cfg).to(torch.float64)
    model.eval()  # no dropout (all p = 0 anyway)
    state = {}
    for name, arr in weights.items():
        t = torch.from_numpy(np.asarray(arr, dtype=np.float64))
        if any(name.endswith(s) for s in CONV1D):
            t = t.t().contiguous()  # g2w [out, in] -> Conv1D [in, out]
        state[hf_name(name)] = t
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("attn.bias") and not m.endswith("masked_bias") and m != "lm_head.weight"]
    assert not missing and not unexpected, (missing, unexpected)
    if not untied:
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    return model


def param_of(model, name):
    return dict(model.named_parameters(remove_duplicate=False))[hf_name(name)]


def g2w_array(model, name):
    """The parameter (or its .grad) in g2w layout, as float64 numpy."""
    t = param_of(model, name)
    return t


def to_g2w(name, t):
    a = t.detach().cpu().numpy()
    if any(name.endswith(s) for s in CONV1D):
        a = a.T
    return np.ascontiguousarray(a, dtype=np.float64)


def mean_loss(model, x, y):
    logits = model(torch.tensor(x)).logits
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1)), logits


def make(name, c, untied, weights, seed_info, B, T, K, sample=None):
    model = build_model(c, untied, weights)
    V = c["vocab_size"]
    r = SplitMix64(1000 + len(name))
    tokens = lambda n: [r.int(V) for _ in range(n)]
    x0, y0 = tokens(B * T), tokens(B * T)
    arrays, index, stats = [], {}, {}

    def put(key, a):
        a = np.asarray(a, dtype=np.float32).ravel()
        index[key] = [sum(len(v) for v in arrays), len(a)]
        arrays.append(a)

    sch = schema(c, untied)
    samples = {}
    if sample:
        sr = SplitMix64(77)
        for n, shape in sch:
            cnt = int(np.prod(shape))
            samples[n] = [sr.int(cnt) for _ in range(sample)]

    def record(prefix, n, a):
        a = a.ravel()
        stats[f"{prefix}:{n}"] = {"max_abs": float(np.abs(a).max()), "sum_squares": float((a * a).sum())}
        put(f"{prefix}:{n}", a[samples[n]] if sample else a)

    # Step 0: logits, loss, gradients.
    model.zero_grad()
    loss, logits = mean_loss(model, [x0[i * T:(i + 1) * T] for i in range(B)], [y0[i * T:(i + 1) * T] for i in range(B)])
    loss.backward()
    lg = logits.detach().numpy().reshape(B * T, V)
    if sample:
        vs = [SplitMix64(78).int(V) for _ in range(64)]
        put("logits", lg[:, vs])
        stats["logits"] = {"row_max": [float(v) for v in lg.max(1)], "row_logsumexp": [float(np.log(np.exp(row - row.max()).sum()) + row.max()) for row in lg],
                           "max_abs": float(np.abs(lg).max())}
        samples["logits_columns"] = vs
    else:
        put("logits", lg)
    for n, _ in sch:
        record("grad", n, to_g2w(n, param_of(model, n).grad))

    # 10 AdamW steps, K micro-batches each, clipping at max_norm.
    hp = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "max_norm": 0.5, "steps": 10, "micro_batches": K}
    params = [param_of(model, n) for n, _ in sch]
    decay = [p for (n, s), p in zip(sch, params) if len(s) >= 2]
    no_decay = [p for (n, s), p in zip(sch, params) if len(s) < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], foreach=False)
    steps = []
    for s in range(hp["steps"]):
        lr = hp["lr"] * (s + 1) / hp["steps"] if s < 5 else hp["lr"] * 0.5  # changes per step
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        micro = []
        total = 0.0
        for k in range(K):
            xs, ys = tokens(B * T), tokens(B * T)
            micro.append({"inputs": xs, "targets": ys})
            l, _ = mean_loss(model, [xs[i * T:(i + 1) * T] for i in range(B)], [ys[i * T:(i + 1) * T] for i in range(B)])
            (l / K).backward()
            total += l.item() / K
        norm = torch.nn.utils.clip_grad_norm_(params, hp["max_norm"]).item()
        opt.step()
        steps.append({"lr": lr, "micro": micro, "loss": total, "grad_norm": norm})
    for n, _ in sch:
        record("final", n, to_g2w(n, param_of(model, n)))

    doc = {"model": name, "config": c, "untied_head": untied, "weights": seed_info, "batch": B, "seq": T,
           "inputs": x0, "targets": y0, "loss": loss.item(), "optimizer": hp, "steps": steps,
           "arrays": index, "stats": stats, "samples": samples,
           "generated_by": f"tools/make_training_fixtures.py, torch {torch.__version__}, float64"}
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    np.concatenate(arrays).astype("<f4").tofile(os.path.join(OUT, name + ".f32"))
    clipped = sum(1 for s in steps if s["grad_norm"] > hp["max_norm"])
    print(f"{name}: loss {loss.item():.9f}, steps clipped {clipped}/10, last loss {steps[-1]['loss']:.6f}, "
          f"{sum(len(a) for a in arrays)} floats")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    c1 = {"n_layer": 2, "n_head": 3, "n_embd": 12, "n_inner": 20, "n_ctx": 9, "vocab_size": 53}
    make("tied-odd", c1, False, generated_weights(c1, False, 101), {"splitmix64_seed": 101}, B=2, T=7, K=1)
    c2 = {"n_layer": 1, "n_head": 2, "n_embd": 10, "n_inner": 40, "n_ctx": 8, "vocab_size": 37}
    make("untied-odd", c2, True, generated_weights(c2, True, 202), {"splitmix64_seed": 202}, B=2, T=6, K=2)
    # GPT-2's vocabulary: the committed tiny-f32 checkpoint.
    from safetensors.numpy import load_file
    st = load_file(os.path.join(ROOT, "Tests", "Fixtures", "tiny-f32", "model.safetensors"))
    c3 = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_inner": 256, "n_ctx": 64, "vocab_size": 50257}
    w3 = {}
    for n, shape in schema(c3, False):
        a = st.get("transformer." + n, st.get(n))
        w3[n] = a.T if any(n.endswith(s) for s in CONV1D) else a
    make("gpt2-vocab", c3, False, w3, {"file": "Tests/Fixtures/tiny-f32/model.safetensors"}, B=2, T=8, K=2, sample=32)


if __name__ == "__main__":
    main()
