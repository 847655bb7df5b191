#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (standard library only).

    python3 tools/fuzz/make_seeds.py [OUTDIR]      (default: tools/fuzz/seeds)

One directory per target. Everything is derived from the project's fixtures or written here from
the specifications (spec/g2w.md, the safetensors format), so the seeds are small (well under
500 KB in all) and deterministic: running this again gives the same files.
"""
import json, os, shutil, struct, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "seeds")
FIX = os.path.join(ROOT, "Tests", "Fixtures")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(ROOT, *parts), "rb") as f:
        return f.read()


# --- GPT-2 byte-level alphabet (as in encoder.py's bytes_to_unicode) ---------------------------

def byte_level():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, (chr(c) for c in cs)))
    return [table[b] for b in range(256)]


BYTES = byte_level()
EXTRA = ["Ġt", "he", "Ġthe", "in", "Ġa", "<|endoftext|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
VOCAB = BYTES + EXTRA


# --- .g2w writer (spec/g2w.md, appendix B) -------------------------------------------------------

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def align64(n):
    return (n + 63) & ~63


def meta(key, type_code, value):
    k = key.encode()
    return struct.pack("<H", len(k)) + k + struct.pack("<HQ", type_code, len(value)) + value


def u64(v): return struct.pack("<Q", v)
def f64(v): return struct.pack("<d", v)


def strings(items):
    out = struct.pack("<Q", len(items))
    for s in items:
        b = s.encode()
        out += struct.pack("<I", len(b)) + b
    return out


def g2w(metadata, tensors):
    """metadata: encoded entries; tensors: (name, dtype 0=f32/1=f16, shape, values)."""
    blobs = [(n, d, s, struct.pack("<%d%s" % (len(v), "f" if d == 0 else "e"), *v)) for n, d, s, v in tensors]
    meta_bytes = b"".join(metadata)
    table_size = sum(56 + len(n.encode()) for n, *_ in blobs)
    table_off = 128 + len(meta_bytes)
    data_off = align64(table_off + table_size)
    table, offset, layout = b"", data_off, []
    for i, (name, dtype, shape, blob) in enumerate(blobs):
        dims = shape + [0] * (4 - len(shape))
        nb = name.encode()
        table += struct.pack("<HBBI4QQQ", len(nb), dtype, len(shape), crc32c(blob), *dims, offset, len(blob)) + nb
        layout.append((offset, blob))
        end = offset + len(blob)
        offset = end if i == len(blobs) - 1 else align64(end)
    file_size = offset if blobs else data_off

    def header(crc):
        h = b"\x89G2W\r\n\x1a\n" + struct.pack("<HHIII", 1, 0, 0x01020304, 64, 128)
        h += struct.pack("<9Q", 128, len(meta_bytes), len(metadata), table_off, table_size,
                         len(blobs), data_off, file_size - data_off, file_size)
        return h + struct.pack("<II", crc, 0) + bytes(128 - len(h) - 8)

    region = header(0) + meta_bytes + table
    region += bytes(data_off - len(region))
    out = bytearray(header(crc32c(region)) + region[128:])
    for off, blob in layout:
        out += bytes(off - len(out)) + blob
    assert len(out) == file_size
    return bytes(out)


def values(n, seed):
    x, out = seed, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        out.append(((x >> 16 & 0x7FFF) / 32768 - 0.5) * 0.2)
    return out


def gpt2_tensors(n_layer, n_embd, n_inner, n_ctx, vocab, untied):
    e, i = n_embd, n_inner
    plan = [("wte.weight", [vocab, e]), ("wpe.weight", [n_ctx, e])]
    shapes = {"ln_1.weight": [e], "ln_1.bias": [e], "attn.c_attn.weight": [3 * e, e], "attn.c_attn.bias": [3 * e],
              "attn.c_proj.weight": [e, e], "attn.c_proj.bias": [e], "ln_2.weight": [e], "ln_2.bias": [e],
              "mlp.c_fc.weight": [i, e], "mlp.c_fc.bias": [i], "mlp.c_proj.weight": [e, i], "mlp.c_proj.bias": [e]}
    for l in range(n_layer):
        plan += [("h.%d.%s" % (l, k), s) for k, s in shapes.items()]
    plan += [("ln_f.weight", [e]), ("ln_f.bias", [e])]
    if untied:
        plan.append(("lm_head.weight", [vocab, e]))
    return plan


def gpt2_g2w(n_layer, n_head, n_embd, n_inner, n_ctx, vocab, f16, untied, tokenizer):
    md = [meta("g2w.architecture", 5, b"gpt2"), meta("g2w.converter", 5, b"make_seeds.py"),
          meta("gpt2.n_layer", 1, u64(n_layer)), meta("gpt2.n_head", 1, u64(n_head)), meta("gpt2.n_embd", 1, u64(n_embd)),
          meta("gpt2.n_inner", 1, u64(n_inner)), meta("gpt2.n_ctx", 1, u64(n_ctx)), meta("gpt2.vocab_size", 1, u64(vocab)),
          meta("gpt2.layer_norm_epsilon", 3, f64(1e-5)), meta("gpt2.activation", 5, b"gelu_new"),
          meta("gpt2.matrix_layout", 5, b"out_in")]
    if tokenizer:
        md += [meta("tokenizer.model", 5, b"gpt2-bpe"), meta("tokenizer.vocab", 7, strings(VOCAB)),
               meta("tokenizer.merges", 7, strings(MERGES)), meta("tokenizer.eos_id", 1, u64(len(VOCAB) - 1))]
    tensors = []
    for k, (name, shape) in enumerate(gpt2_tensors(n_layer, n_embd, n_inner, n_ctx, vocab, untied)):
        n = 1
        for d in shape:
            n *= d
        v = [1.0] * n if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight" else values(n, k + 1)
        tensors.append((name, 1 if f16 and len(shape) == 2 else 0, shape, v))
    return g2w(md, tensors)


# --- safetensors writer ------------------------------------------------------------------------

def safetensors(tensors, metadata=None, pad=True):
    """tensors: (name, dtype, shape, raw bytes)."""
    header, offset, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)  # what the reference writer does
    return struct.pack("<Q", len(h)) + h + data


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)

    # fuzz-g2w ------------------------------------------------------------------------------------
    put("fuzz-g2w", "example-tiny.g2w", read("spec", "example-tiny.g2w"))
    every_type = [meta("a.u64", 1, u64(7)), meta("b.i64", 2, struct.pack("<q", -3)), meta("c.f64", 3, f64(0.5)),
                  meta("d.bool", 4, b"\x01"), meta("e.string", 5, "héllo".encode()), meta("f.bytes", 6, b"\x00\xff"),
                  meta("g.strings", 7, strings(["", "x", "Ġthe"])), meta("h.unknown", 99, b"??")]
    put("fuzz-g2w", "every-type.g2w", g2w(every_type, [
        ("rank4", 0, [1, 2, 1, 3], values(6, 1)), ("half", 1, [5], values(5, 2)), ("one", 0, [1], [1.0])]))
    put("fuzz-g2w", "empty.g2w", g2w([], []))
    put("fuzz-g2w", "metadata-only.g2w", g2w([meta("k", 5, b"v")], []))
    put("fuzz-g2w", "tiny-gpt2.g2w", gpt2_g2w(1, 2, 8, 32, 8, 16, False, False, False))

    # fuzz-model (whole-file inputs; edit lists start with a flags byte) ----------------------------
    put("fuzz-model", "tiny-gpt2-f32.g2w", gpt2_g2w(1, 2, 8, 32, 8, 16, False, False, False))
    put("fuzz-model", "tiny-gpt2-f16-tokenizer.g2w", gpt2_g2w(1, 1, 8, 16, 4, len(VOCAB), True, True, True))
    put("fuzz-model", "edits-base-a", b"\x00")
    put("fuzz-model", "edits-base-b", b"\x01")
    put("fuzz-model", "edits-sample", b"\x00" + struct.pack("<HBBHBB", 0x98, 0, 2, 0x40, 3, 5))

    # fuzz-safetensors ------------------------------------------------------------------------------
    f32 = lambda v: struct.pack("<%df" % len(v), *v)
    put("fuzz-safetensors", "empty.safetensors", safetensors([], pad=False))
    put("fuzz-safetensors", "dtypes.safetensors", safetensors([
        ("f32", "F32", [2, 2], f32([1, 2, 3, 4])), ("f16", "F16", [3], struct.pack("<3e", 1, -2, 0.5)),
        ("bf16", "BF16", [1, 2], b"\x80\x3f\x00\x40"), ("i64", "I64", [1], struct.pack("<q", -1)),
        ("u8", "U8", [4], b"\x00\x01\xfe\xff"), ("bool", "BOOL", [2], b"\x00\x01"), ("f64", "F64", [], f64(2.5)),
        ("zero", "F32", [0, 3], b""), ("f8", "F8_E4M3", [2], b"\x38\xb8")], metadata={"format": "pt"}))
    plan = gpt2_tensors(1, 2, 8, 2, 4, False)
    plan[2:2] = [("h.0.attn.bias", [1, 1, 2, 2])]
    put("fuzz-safetensors", "tiny-gpt2.safetensors", safetensors(
        [("transformer." + n if i % 2 else n, "F32", s, f32(values(eval("*".join(map(str, s))), i))) for i, (n, s) in enumerate(plan)],
        metadata={"format": "pt"}))
    put("fuzz-safetensors", "unpadded.safetensors", safetensors([("x", "F16", [2], b"\x00\x3c\x00\xc0")], pad=False))

    # fuzz-json-config ------------------------------------------------------------------------------
    put("fuzz-json-config", "tiny-f32-config.json", read("Tests", "Fixtures", "tiny-f32", "config.json"))
    for name in ["odd-heads", "openai-keys", "untied-head"]:
        put("fuzz-json-config", name + "-config.json", read("Tests", "Fixtures", "parity", name, "config.json"))
    put("fuzz-json-config", "generation_config.json", read("Tests", "Fixtures", "parity", "odd-heads", "generation_config.json"))
    put("fuzz-json-config", "minimal-config.json", '{"n_layer":1,"n_head":1,"n_embd":8,"n_positions":4,"vocab_size":16}')
    put("fuzz-json-config", "hf-names-config.json", '{"model_type":"gpt2","num_hidden_layers":2,"num_attention_heads":2,'
        '"hidden_size":8,"n_ctx":4,"vocab_size":300,"n_inner":null,"layer_norm_epsilon":1e-6,"activation_function":"gelu_pytorch_tanh"}')
    put("fuzz-json-config", "values.json", '[null,true,false,0,-0,1.5e-3,-12E+2,9223372036854775807,-9223372036854775808,'
        '18446744073709551616,1e999,"",{"":[]},[[[]]]]')
    put("fuzz-json-config", "strings.json", r'{"esc":"\"\\\/\b\f\n\r\t","u":"\u00e9\u4e2d\ud83d\ude00","raw":"é中😀"}')
    st = tiny = open(os.path.join(OUT, "fuzz-safetensors", "dtypes.safetensors"), "rb").read()
    put("fuzz-json-config", "safetensors-header.json", st[8:8 + struct.unpack("<Q", st[:8])[0]])

    # fuzz-tokenizer-files: mode byte, then file(s) separated by NUL --------------------------------
    vocab_json = json.dumps({t: i for i, t in enumerate(VOCAB)}, ensure_ascii=False).encode()
    vocab_json_ascii = json.dumps({t: i for i, t in enumerate(VOCAB)}).encode()  # \u escapes
    merges_txt = ("#version: 0.2\n" + "\n".join(MERGES) + "\n").encode()
    put("fuzz-tokenizer-files", "encoder-json-vocab-bpe", b"\x00" + vocab_json + b"\x00" + merges_txt)
    put("fuzz-tokenizer-files", "encoder-json-escaped-crlf", b"\x00" + vocab_json_ascii + b"\x00" + merges_txt.replace(b"\n", b"\r\n"))
    tokenizer_json = {"version": "1.0", "added_tokens": [{"id": len(VOCAB) - 1, "content": "<|endoftext|>", "special": True}],
                      "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(VOCAB[:-1])}, "merges": MERGES}}
    put("fuzz-tokenizer-files", "tokenizer-json", b"\x01" + json.dumps(tokenizer_json, ensure_ascii=False).encode())
    tokenizer_json["model"]["merges"] = [m.split(" ") for m in MERGES]
    put("fuzz-tokenizer-files", "tokenizer-json-pairs", b"\x01" + json.dumps(tokenizer_json).encode())
    put("fuzz-tokenizer-files", "arrays", b"\x02" + "\n".join(VOCAB).encode() + b"\x00" + "\n".join(MERGES).encode())
    gpt2_merges = read("Tests", "Fixtures", "tiny-f32", "merges.txt").split(b"\n")[:40]
    put("fuzz-tokenizer-files", "gpt2-merges-head", b"\x00" + vocab_json + b"\x00" + b"\n".join(gpt2_merges))

    # fuzz-tokenizer-roundtrip: texts (and, read as u16s, id sequences) -----------------------------
    cases = json.load(open(os.path.join(FIX, "tokenizer", "edge_cases.json"), encoding="utf-8"))["cases"]
    chosen = [t for k, (t, _) in enumerate(cases) if k % 50 == 0 and len(t.encode()) <= 400]
    for k, t in enumerate(chosen):
        put("fuzz-tokenizer-roundtrip", "edge-%03d" % k, t)
    # Texts of 4096 bytes and more take the encoder's piece-cache path; these seeds also raise
    # libFuzzer's default -max_len to their size.
    long = [t for t, _ in cases if 4096 <= len(t.encode()) <= 6000][:2]
    for k, t in enumerate(long):
        put("fuzz-tokenizer-roundtrip", "long-%d" % k, t)
    put("fuzz-tokenizer-roundtrip", "special", "a<|endoftext|>b <|endoftext|>")
    put("fuzz-tokenizer-roundtrip", "mixed", "Hello, world! It's 2024 — naïve café 中文 😀👍🏽 \t\n  x")
    put("fuzz-tokenizer-roundtrip", "ids", struct.pack("<8H", 15496, 995, 50256, 50257, 0xFF00, 0xFFFF, 220, 1))
    put("fuzz-tokenizer-roundtrip", "invalid-utf8", b"\xe2\x82 \xf0\x9f\x98 \xc3\x28 \xff\xfe ok")

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    count = sum(len(fs) for _, _, fs in os.walk(OUT))
    print("wrote %d seed files, %d bytes, under %s" % (count, total, OUT))


main()
