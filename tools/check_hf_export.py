#!/usr/bin/env python3
"""Checks a Hugging Face export (`HuggingFaceExport`, Sources/G2WTraining/HuggingFaceExport.swift)
against the `.g2w` file it came from, with transformers itself.

Usage:
    python3 tools/check_hf_export.py EXPORT_DIR MODEL.g2w [--sequences N] [--seed S]

Checks, printing one line each ("ok" or "FAIL"):
  1. `transformers.GPT2LMHeadModel.from_pretrained(EXPORT_DIR)` loads with no missing,
     unexpected or mismatched keys and no error messages, in float32;
  2. its config (n_layer, n_head, n_embd, n_inner, n_positions, vocab_size, layer_norm_epsilon,
     activation) equals the `.g2w` file's `gpt2.*` metadata, and the head is tied exactly when
     the `.g2w` file has no `lm_head.weight`;
  3. every tensor of the `.g2w` file (read with tools/g2w_reader.py, the independent reader,
     after its spec section 9.2 verification) equals the transformers parameter it maps to, bit
     for bit: `transformer.` + name, Conv1D weights (`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`,
     `mlp.c_proj`) transposed from the file's [out, in] to transformers' [in, out]; f16 files are
     compared after exact widening; no transformers parameter is left unchecked;
  4. vocab.json + merges.txt are there exactly when the `.g2w` file has a tokenizer, and then
     `AutoTokenizer.from_pretrained(EXPORT_DIR)` loads them with the `.g2w` file's vocabulary
     (token -> id) and merges in rank order, and round-trips a sample text;
  5. transformers runs on N token sequences (seeded random ids of lengths 1, n_ctx/2 and n_ctx,
     and the sample text when there is a tokenizer): the logits have the right shape and are
     finite, and agree with a plain float64 GPT-2 forward written here from the `.g2w` weights
     in their own layout (to 1e-4 of the largest |logit|) -- so the layout mapping is right in
     meaning, not only consistent. A summary line per sequence: length, logit range, next-token
     loss, the argmax at the last position.

Exit status: 0 if every check passed, 1 if any failed, 2 for a usage error or an unreadable
file. Needs torch and transformers; tools/g2w_reader.py is imported from beside this file.

Example (the committed tiny model, exported by the Swift test harness):
    .build/release/g2w-convert Tests/Fixtures/tiny-f32 -o /tmp/tiny.g2w --dtype f32
    G2W_EXPORT_SOURCE=/tmp/tiny.g2w G2W_EXPORT_DIRECTORY=/tmp/tiny-hf \\
        swift test -c release --filter HuggingFaceExportTests/testExportForTheTransformersCheck
    python3 tools/check_hf_export.py /tmp/tiny-hf /tmp/tiny.g2w
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import g2w_reader  # noqa: E402

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SAMPLE = "Hello, world! It's a test of the export \u2014 na\u00efve caf\u00e9, \u6771\u4eac, emoji \U0001F600.\n\n  The end."
LOGIT_TOLERANCE = 1e-4


class Report:
    def __init__(self):
        self.failures = 0
        self.passes = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passes += 1
        else:
            self.failures += 1
        print("%-4s %s%s" % ("ok" if ok else "FAIL", what, (": " + detail) if detail and not ok else ""))
        return ok

    def info(self, text):
        print("     " + text)


def checkpoint_name(name):
    return name if name == "lm_head.weight" else "transformer." + name


def is_conv1d(name):
    return any(name.endswith("." + s) for s in CONV1D_SUFFIXES)


def g2w_tensor(torch, g, t):
    """A .g2w tensor as a float32 torch tensor of its shape (f16 widened exactly)."""
    blob = bytearray(g.read_blob(t))
    dtype = torch.float32 if t.dtype == "f32" else torch.float16
    # Little-endian in the file; torch.frombuffer uses the host order (little-endian on x86-64/arm64).
    return torch.frombuffer(blob, dtype=dtype).reshape(t.shape).float() if t.elements else torch.zeros(t.shape)


def bits_equal(torch, a, b):
    return a.shape == b.shape and torch.equal(a.contiguous().view(torch.int32), b.contiguous().view(torch.int32))


def reference_logits(torch, w, cfg, ids):
    """GPT-2's forward in float64 from `.g2w` weights ([out, in] matrices): y = x W^T + b."""
    d = torch.float64
    W = {k: v.to(d) for k, v in w.items()}
    n = len(ids)
    e, h = cfg["n_embd"], cfg["n_head"]
    hs = e // h
    eps = cfg["eps"]

    def layer_norm(x, g, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * g + b

    def gelu(x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    x = W["wte.weight"][ids] + W["wpe.weight"][:n]
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    for i in range(cfg["n_layer"]):
        p = lambda s: W["h.%d.%s" % (i, s)]  # noqa: E731
        a = layer_norm(x, p("ln_1.weight"), p("ln_1.bias"))
        qkv = a @ p("attn.c_attn.weight").T + p("attn.c_attn.bias")
        q, k, v = qkv.split(e, dim=-1)
        q, k, v = (t.reshape(n, h, hs).transpose(0, 1) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        s = s.masked_fill(mask, float("-inf")).softmax(-1)
        y = (s @ v).transpose(0, 1).reshape(n, e)
        x = x + y @ p("attn.c_proj.weight").T + p("attn.c_proj.bias")
        m = layer_norm(x, p("ln_2.weight"), p("ln_2.bias"))
        m = gelu(m @ p("mlp.c_fc.weight").T + p("mlp.c_fc.bias"))
        x = x + m @ p("mlp.c_proj.weight").T + p("mlp.c_proj.bias")
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"])
    head = W.get("lm_head.weight", W["wte.weight"])
    return x @ head.T


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a Hugging Face export against its .g2w file with transformers.")
    ap.add_argument("export_dir", help="directory written by HuggingFaceExport")
    ap.add_argument("g2w", help="the .g2w file it was exported from")
    ap.add_argument("--sequences", type=int, default=3, help="random token sequences to run (default 3)")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random sequences")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.export_dir):
        print("error: %s is not a directory" % args.export_dir, file=sys.stderr)
        return 2
    try:
        g = g2w_reader.read_g2w(args.g2w)
    except (OSError, g2w_reader.G2WError) as e:
        print("error: %s: %s" % (args.g2w, e), file=sys.stderr)
        return 2

    import torch
    import transformers
    from transformers import AutoTokenizer, GPT2LMHeadModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    r = Report()
    print("transformers %s, torch %s; export %s; source %s" % (transformers.__version__, torch.__version__, args.export_dir, args.g2w))

    # 1. Loading.
    try:
        model, info = GPT2LMHeadModel.from_pretrained(args.export_dir, output_loading_info=True)
    except Exception as e:  # noqa: BLE001 -- any failure to load is the finding
        r.check(False, "from_pretrained", "%s: %s" % (type(e).__name__, e))
        print("%d passed, %d failed" % (r.passes, r.failures))
        return 1
    model.eval()
    problems = {k: sorted(v) for k, v in info.items() if v}
    r.check(not problems, "from_pretrained: no missing, unexpected or mismatched keys",
            "; ".join("%s %s" % (k, v[:5]) for k, v in problems.items()))
    r.check(model.dtype == torch.float32, "model dtype float32", str(model.dtype))

    # 2. Configuration.
    c = model.config
    meta = lambda k, default=None: g.metadata_value(k, default=default)  # noqa: E731
    n_embd = meta("gpt2.n_embd")
    expected = {
        "n_layer": meta("gpt2.n_layer"), "n_head": meta("gpt2.n_head"), "n_embd": n_embd,
        "n_inner": meta("gpt2.n_inner", 4 * n_embd), "n_positions": meta("gpt2.n_ctx"),
        "vocab_size": meta("gpt2.vocab_size"),
    }
    found = dict(expected)
    found.update({k: getattr(c, k) for k in expected})
    if found["n_inner"] is None:
        found["n_inner"] = 4 * c.n_embd
    r.check(found == expected, "config sizes", "config %s, .g2w %s" % (found, expected))
    eps = meta("gpt2.layer_norm_epsilon", 1e-5)
    r.check(c.layer_norm_epsilon == eps, "config layer_norm_epsilon", "%r vs %r" % (c.layer_norm_epsilon, eps))
    act = meta("gpt2.activation", "gelu_new")
    r.check(c.activation_function in ("gelu_new", "gelu_pytorch_tanh") and act in ("gelu_new", "gelu_pytorch_tanh"),
            "activation (tanh GELU)", "config %s, .g2w %s" % (c.activation_function, act))

    # A g2w-train checkpoint also holds the optimizer's moments (spec section 14, `train.` tensors):
    # not part of the model, not exported.
    model_tensors = [t for t in g.tensors if not t.name.startswith("train.")]
    names = [t.name for t in model_tensors]
    untied = "lm_head.weight" in names
    tied_storage = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    r.check(bool(c.tie_word_embeddings) == (not untied) and tied_storage == (not untied),
            "head %s" % ("untied (lm_head.weight in the .g2w file)" if untied else "tied to wte"),
            "config tie_word_embeddings %s, lm_head shares wte's storage: %s" % (c.tie_word_embeddings, tied_storage))

    # 3. Tensors, bit for bit.
    try:
        g.verify()
        r.check(True, ".g2w verification (CRC-32C of every blob)")
    except g2w_reader.G2WError as e:
        r.check(False, ".g2w verification", str(e))
    params = dict(model.named_parameters(remove_duplicate=False))
    weights = {}
    mismatched = []
    for t in model_tensors:
        key = checkpoint_name(t.name)
        v = g2w_tensor(torch, g, t)
        weights[t.name] = v
        if key not in params:
            mismatched.append("%s: no such transformers parameter" % key)
            continue
        hf = params[key].detach()
        mine = v.t() if is_conv1d(t.name) and v.dim() == 2 else v
        if not bits_equal(torch, hf, mine):
            if hf.shape != mine.shape:
                mismatched.append("%s: shape %s, .g2w gives %s" % (key, list(hf.shape), list(mine.shape)))
            else:
                diff = (hf.double() - mine.double()).abs().max().item()
                mismatched.append("%s: differs (max |diff| %g)" % (key, diff))
    r.check(not mismatched, "%d tensors equal bit for bit (Conv1D weights transposed)" % len(model_tensors), "; ".join(mismatched[:5]))
    covered = {checkpoint_name(n) for n in names}
    if not untied:
        covered.add("lm_head.weight")  # tied: the same tensor as transformer.wte.weight, checked above
    unchecked = sorted(set(params) - covered)
    r.check(not unchecked, "every transformers parameter checked", ", ".join(unchecked[:5]))

    # 4. Tokenizer.
    tokenizer = None
    vocab_path = os.path.join(args.export_dir, "vocab.json")
    merges_path = os.path.join(args.export_dir, "merges.txt")
    has_files = os.path.exists(vocab_path) and os.path.exists(merges_path)
    g2w_vocab = meta("tokenizer.vocab")
    r.check(has_files == (g2w_vocab is not None), "tokenizer files present exactly when the .g2w file has a tokenizer",
            "vocab.json + merges.txt: %s, .g2w tokenizer: %s" % (has_files, g2w_vocab is not None))
    if has_files and g2w_vocab is not None:
        # What a user would do: AutoTokenizer (GPT-2's, from config.json's model_type) on the directory.
        tokenizer = AutoTokenizer.from_pretrained(args.export_dir)
        expected_vocab = {tok: i for i, tok in enumerate(g2w_vocab)}
        vocab = tokenizer.get_vocab()
        r.check(vocab == expected_vocab, "vocab.json: %d tokens, token -> id as in the .g2w file" % len(expected_vocab),
                "%d tokens, %d differ" % (len(vocab), sum(1 for k, v in expected_vocab.items() if vocab.get(k) != v)))
        with open(merges_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        g2w_merges = list(meta("tokenizer.merges", []))
        r.check(lines[0].startswith("#version") and lines[-1] == "" and lines[1:-1] == g2w_merges,
                "merges.txt: header, %d merges in the .g2w order, final newline" % len(g2w_merges))
        model_json = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
        loaded = [m if isinstance(m, str) else " ".join(m) for m in model_json.get("merges", [])]
        r.check(loaded == g2w_merges, "transformers' merges (%s) in the .g2w order" % type(tokenizer).__name__,
                "%d merges loaded, first difference at rank %s" % (len(loaded), next((i for i, (a, b) in enumerate(zip(loaded, g2w_merges)) if a != b), min(len(loaded), len(g2w_merges)))))
        ids = tokenizer.encode(SAMPLE)
        back = tokenizer.decode(ids)
        r.check(back == SAMPLE and all(0 <= i < c.vocab_size for i in ids), "tokenizer round trip of a sample (%d tokens)" % len(ids), repr(back))

    # 5. Running.
    n_ctx = c.n_positions
    lengths = sorted({1, max(1, n_ctx // 2), n_ctx})
    lengths = (lengths * ((args.sequences + len(lengths) - 1) // len(lengths)))[: max(args.sequences, 0)]
    gen = torch.Generator().manual_seed(args.seed)
    sequences = [("random", torch.randint(0, c.vocab_size, (n,), generator=gen).tolist()) for n in lengths]
    if tokenizer is not None:
        sequences.append(("sample text", tokenizer.encode(SAMPLE)[:n_ctx]))
    cfg = {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd, "eps": c.layer_norm_epsilon}
    for label, ids in sequences:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        shape_ok = list(logits.shape) == [len(ids), c.vocab_size]
        finite = bool(torch.isfinite(logits).all())
        ref = reference_logits(torch, weights, cfg, torch.tensor(ids))
        scale = ref.abs().max().item()
        err = (logits.double() - ref).abs().max().item() / (scale or 1)
        if len(ids) > 1:
            loss = torch.nn.functional.cross_entropy(logits[:-1].double(), torch.tensor(ids[1:])).item()
            loss_text = "next-token loss %.4f" % loss
        else:
            loss_text = "no next token"
        r.check(shape_ok and finite and err <= LOGIT_TOLERANCE,
                "logits of %s, %d tokens: shape %s, finite: %s, vs float64 reference %.2e of max |logit|"
                % (label, len(ids), list(logits.shape), finite, err))
        r.info("logits in [%.4f, %.4f], mean %.4f; %s; argmax at the last position %d"
               % (logits.min().item(), logits.max().item(), logits.mean().item(), loss_text, logits[-1].argmax().item()))

    print("%d passed, %d failed" % (r.passes, r.failures))
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
