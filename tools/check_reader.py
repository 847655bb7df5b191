#!/usr/bin/env python3
"""Cross-check: the independent Python reader (tools/g2w_reader.py, written from spec/g2w.md)
against the reference tool `g2w-inspect` (Swift), run by CI after `swift build -c release`.

For every file of a set -- the spec's worked example, the tiny test model converted with
`g2w-convert` (f32 and f16), Tests/Fixtures/shakespeare.g2w when present, and a few small
files written here by a minimal spec-following writer (every metadata value type, a header
extension, an empty file) -- both readers print `--json` and the parsed objects must be equal
(floats to a relative 1e-12; the "file" field is ignored). Both then run `--verify` on two
files, and both must reject a handful of corrupted files.

Version 1.1 (q8_0 / q4_0, spec 6.4): files built here from the reference encodings in
Tests/Fixtures/quant/ (made by ggml's own Python quantizer, tools/make_quant_fixtures.py) must
read back, through the Python reader, bit for bit equal to that quantizer's dequantized values;
g2w-inspect must either agree (--json equal) or, as a 1.0 reader, reject them naming the
element type code; and both readers must reject the malformed ones (last dimension not a
multiple of 32, a NaN or infinite scale, a wrong byte_length, an unknown code, a quantized
tensor in a file labelled 1.0), the Python reader with an error naming the tensor, the block or
the value concerned.

Python 3 standard library only. Usage: python3 tools/check_reader.py [--keep DIR]
Prints one line per check and ends with "N passed, M failed"; exit status 1 if any failed.
"""

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER = os.path.join(ROOT, "tools", "g2w_reader.py")
INSPECT = os.path.join(ROOT, ".build", "release", "g2w-inspect")
CONVERT = os.path.join(ROOT, ".build", "release", "g2w-convert")
EXAMPLE = os.path.join(ROOT, "spec", "example-tiny.g2w")
TINY_MODEL = os.path.join(ROOT, "Tests", "Fixtures", "tiny-f32", "model.safetensors")
SHAKESPEARE = os.path.join(ROOT, "Tests", "Fixtures", "shakespeare.g2w")
QUANT_FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "quant")

REL_TOL = 1e-12
TMP = None          # the temporary directory, shown as "$TMP" in the output


# --------------------------------------------------------------------------------------------
# Bookkeeping

class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = "%s  %s" % ("PASS" if ok else "FAIL", what)
        if detail:
            line += ": " + detail
        print(line, flush=True)
        return ok


def rel(path):
    if TMP and os.path.abspath(path).startswith(TMP + os.sep):
        return "$TMP/" + os.path.relpath(path, TMP)
    try:
        r = os.path.relpath(path, ROOT)
    except ValueError:
        return path
    return path if r.startswith("..") else r


def run(cmd, timeout=600):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def inspect_cmd(path, *flags):
    return [INSPECT] + list(flags) + [path]


def reader_cmd(path, *flags):
    return [sys.executable, READER, path] + list(flags)


# --------------------------------------------------------------------------------------------
# JSON comparison: exact, except floats (relative 1e-12) and the "file" field

def diff_json(a, b, path="$"):
    """Returns None if equal, else a description of the first difference."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if (type(a) is type(b) and a == b) else "%s: %r != %r" % (path, a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return None if a == b else "%s: %r != %r" % (path, a, b)
        fa, fb = float(a), float(b)
        if fa == fb or math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=0.0):
            return None
        return "%s: %r != %r" % (path, a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        ka = [k for k in a if not (path == "$" and k == "file")]
        kb = [k for k in b if not (path == "$" and k == "file")]
        if sorted(ka) != sorted(kb):
            return "%s: keys %s != %s" % (path, sorted(ka), sorted(kb))
        for k in ka:
            d = diff_json(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: length %d != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff_json(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if type(a) is not type(b) or a != b:
        return "%s: %r != %r" % (path, a, b)
    return None


def both_json(path, *flags):
    """Runs both readers with --json; returns (ok, detail, inspect_obj, reader_obj)."""
    rc1, out1, err1 = run(inspect_cmd(path, "--json", *flags))
    rc2, out2, err2 = run(reader_cmd(path, "--json", *flags))
    if rc1 != 0 or rc2 != 0:
        return (False, "exit status g2w-inspect %d, g2w_reader %d (%s%s)"
                % (rc1, rc2, err1.strip()[:200], (" | " + err2.strip()[:300]) if err2 else ""),
                None, None)
    try:
        a = json.loads(out1)
    except ValueError as e:
        return False, "g2w-inspect printed invalid JSON: %s" % e, None, None
    try:
        b = json.loads(out2)
    except ValueError as e:
        return False, "g2w_reader printed invalid JSON: %s" % e, None, None
    d = diff_json(a, b)
    if d:
        return False, "JSON differs at " + d, a, b
    return True, "", a, b


# --------------------------------------------------------------------------------------------
# A minimal writer, following the spec (section 3, 4, 5, 6, Appendix B) and sharing no code
# with either reader, for small test files the converter cannot produce.

def _crc32c_bitwise(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _align64(n):
    return (n + 63) & ~63


def meta(key, type_code, value):
    k = key.encode("ascii")
    return struct.pack("<H", len(k)) + k + struct.pack("<HQ", type_code, len(value)) + value


def string_array(items):
    out = struct.pack("<Q", len(items))
    for s in items:
        b = s.encode("utf-8")
        out += struct.pack("<I", len(b)) + b
    return out


def write_g2w(path, metadata, tensors, minor=0, header_size=128, flags=0, reserved=bytes(24),
              extension=b""):
    """metadata: list of encoded entries; tensors: list of (name, dtype code, shape, blob)."""
    meta_bytes = b"".join(metadata)
    names = [n.encode("utf-8") for n, _, _, _ in tensors]
    table_off = header_size + len(meta_bytes)
    table_size = sum(56 + len(n) for n in names)
    data_off = _align64(table_off + table_size)
    table, offset, layout = b"", data_off, []
    for i, ((_, dtype, shape, blob), nb) in enumerate(zip(tensors, names)):
        dims = list(shape) + [0] * (4 - len(shape))
        table += struct.pack("<HBBI4QQQ", len(nb), dtype, len(shape), _crc32c_bitwise(blob),
                             *dims, offset, len(blob)) + nb
        layout.append((offset, blob))
        end = offset + len(blob)
        offset = end if i == len(tensors) - 1 else _align64(end)
    file_size = offset if tensors else data_off

    def header(crc):
        h = b"\x89G2W\r\n\x1a\n" + struct.pack("<HHIII", 1, minor, 0x01020304, 64, header_size)
        h += struct.pack("<9Q", header_size, len(meta_bytes), len(metadata), table_off,
                         table_size, len(tensors), data_off, file_size - data_off, file_size)
        h += struct.pack("<II", crc, flags) + reserved
        h += extension
        return h + bytes(header_size - len(h))

    region = header(0) + meta_bytes + table
    region += bytes(data_off - len(region))
    region = header(_crc32c_bitwise(region)) + region[header_size:]
    out = bytearray(region)
    for off, blob in layout:
        out += bytes(off - len(out)) + blob
    assert len(out) == file_size
    with open(path, "wb") as f:
        f.write(out)
    return path


def fix_header_crc(data):
    """Recomputes header_crc32c after a deliberate edit, so that a structural check (not the
    CRC) is what must reject the file."""
    b = bytearray(data)
    data_off = struct.unpack_from("<Q", b, 72)[0]
    b[96:100] = bytes(4)
    b[96:100] = struct.pack("<I", _crc32c_bitwise(bytes(b[:data_off])))
    return bytes(b)


def crafted_files(tmp):
    files = []
    f16 = lambda *xs: struct.pack("<%de" % len(xs), *xs)   # noqa: E731
    f32 = lambda *xs: struct.pack("<%df" % len(xs), *xs)   # noqa: E731
    files.append(write_g2w(os.path.join(tmp, "crafted-types.g2w"), [
        meta("t.u64", 1, struct.pack("<Q", 2 ** 64 - 1)),
        meta("t.i64", 2, struct.pack("<q", -(2 ** 63))),
        meta("t.f64", 3, struct.pack("<d", 0.1)),
        meta("t.f64_int", 3, struct.pack("<d", 3.0)),
        meta("t.f64_big", 3, struct.pack("<d", 1e300)),
        meta("t.f64_sub", 3, struct.pack("<d", 5e-324)),
        meta("t.f64_nan", 3, struct.pack("<d", float("nan"))),
        meta("t.f64_inf", 3, struct.pack("<d", float("-inf"))),
        meta("t.true", 4, b"\x01"),
        meta("t.false", 4, b"\x00"),
        meta("t.str", 5, "caf\u00e9 \"q\" \\ \n\t\x00\x1f \U0001F600 \ufeff".encode("utf-8")),
        meta("t.empty", 5, b""),
        meta("t.bytes", 6, bytes(range(7))),
        meta("t.strs", 7, string_array(["", "x", "\u00e9\u00e8"])),
        meta("t.strs0", 7, string_array([])),
        meta("t.unknown", 42, b"opaque"),
        meta("t.reserved0", 0, b""),
    ], [
        ("r4 tensor/\u00e9:1", 1, [2, 1, 3, 1], f16(1, 2, 3, -1, 0.5, 0.25)),
        ("s", 0, [1], f32(7.0)),
        ("v", 0, [17], f32(*range(17))),
    ]))
    files.append(write_g2w(os.path.join(tmp, "crafted-extension.g2w"),
                           [meta("x.k", 5, b"v")], [("w", 0, [3], f32(1, 2, 3))],
                           minor=3, header_size=192, flags=0xA5A5A5A5, reserved=b"\xff" * 24,
                           extension=b"future header fields"))
    files.append(write_g2w(os.path.join(tmp, "crafted-empty.g2w"), [], []))
    return files


# --------------------------------------------------------------------------------------------
# The checks

def check_positive(checks, path):
    ok, detail, a, _ = both_json(path)
    if ok:
        detail = "--json equal (%d bytes, %d metadata, %d tensors)" % (
            a["file_size"], len(a["metadata"]), len(a["tensors"]))
    return checks.record(ok, rel(path), detail)


def check_verify(checks, path):
    ok, detail, a, b = both_json(path, "--verify")
    if ok and not (a.get("verified") is True and b.get("verified") is True):
        ok, detail = False, "verified: g2w-inspect %r, g2w_reader %r" % (
            a.get("verified"), b.get("verified"))
    if ok:
        detail = "--verify --json equal, all %d tensor checksums match" % len(a["tensors"])
    return checks.record(ok, rel(path), detail)


def check_rejected(checks, label, path, *flags):
    """Both readers must exit non-zero; the Python reader cleanly (no traceback)."""
    rc1, _, err1 = run(inspect_cmd(path, *flags))
    rc2, _, err2 = run(reader_cmd(path, *flags))
    crashed = "Traceback" in err2
    ok = rc1 != 0 and rc2 != 0 and not crashed
    detail = "both reject" if ok else "g2w-inspect exit %d, g2w_reader exit %d%s" % (
        rc1, rc2, " (crashed)" if crashed else "")
    msg2 = err2.strip().splitlines()[-1] if err2.strip() else ""
    for marker in ("invalid .g2w file: ", "verify failed: "):
        if marker in msg2:
            msg2 = msg2.split(marker, 1)[1]
    if ok and msg2:
        detail += ": " + (msg2 if len(msg2) <= 110 else msg2[:107] + "...")
    elif not ok:
        detail += " | " + (err1.strip()[:150] + " | " + err2.strip()[-300:])
    return checks.record(ok, "%s [%s]" % (label, " ".join(flags) or "open"), detail)


def check_example_values(checks):
    """The module API decodes the spec's worked example (section 13) to its stated values."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import g2w_reader
        g = g2w_reader.read_g2w(EXAMPLE)
        got = (g.metadata_value("g2w.architecture", "string"), g.metadata_value("tiny.n", "u64"),
               g.metadata_value("tiny.tags", "string[]"), g.tensor_values("weight"),
               g.tensor("weight").shape, g.tensor_values("bias"), g.header["header_crc32c"])
        want = ("tiny", 3, ["a", "bc"], [1.0, 2.0, 3.0, -1.0, 0.5, 0.25], [2, 3], [0.5, -2.0],
                0xA1EC693A)
        vectors = [g2w_reader.crc32c(b"123456789") == 0xE3069283,
                   g2w_reader.crc32c(bytes(32)) == 0x8A9136AA,
                   g2w_reader.crc32c(b"\xff" * 32) == 0x62A8AB43]
        ok = got == want and all(vectors)
        detail = ("metadata, tensor values and CRC-32C test vectors as in spec section 13 / "
                  "Appendix A" if ok else "got %r" % (got,))
    except Exception as e:  # noqa: BLE001 - report anything as a failed check
        ok, detail = False, "%s: %s" % (type(e).__name__, e)
    return checks.record(ok, rel(EXAMPLE) + " (module API)", detail)


def negative_checks(checks, tmp, converted_f16):
    with open(EXAMPLE, "rb") as f:
        example = f.read()

    def variant(name, data):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def edit(data, offset, new):
        b = bytearray(data)
        b[offset:offset + len(new)] = new
        return bytes(b)

    # 1. a flipped bit in the header region (a metadata value byte): header CRC mismatch
    b = bytearray(example)
    b[0x9C] ^= 0x01                     # "tiny" -> "uiny"
    check_rejected(checks, "example: flipped header-region byte 0x9c",
                   variant("flip-header.g2w", bytes(b)))
    # 2. truncated inside a blob
    check_rejected(checks, "example: truncated inside blob 'weight' (390 of 456 bytes)",
                   variant("truncated.g2w", example[:390]))
    # 3. major version 2 (header CRC recomputed: the version check itself must reject)
    check_rejected(checks, "example: version_major 2 (CRC fixed)",
                   variant("major2.g2w", fix_header_crc(edit(example, 8, b"\x02\x00"))))
    # 4. byte-swapped byte-order mark
    check_rejected(checks, "example: byte-order mark 01 02 03 04",
                   variant("bom.g2w", edit(example, 12, b"\x01\x02\x03\x04")))
    # 5. non-zero padding before data_offset (CRC fixed: the padding check must reject)
    check_rejected(checks, "example: non-zero header padding byte 0x170 (CRC fixed)",
                   variant("pad-header.g2w", fix_header_crc(edit(example, 0x170, b"\x01"))))
    # 6. a trailing byte
    check_rejected(checks, "example: one trailing byte", variant("trailing.g2w", example + b"\0"))
    # 7. a corrupted blob byte: opens fine, --verify must fail
    p = variant("flip-blob.g2w", edit(example, 0x181, bytes([example[0x181] ^ 0x40])))
    ok, detail, _, _ = both_json(p)
    checks.record(ok, "example: flipped blob byte 0x181 [open]",
                  "both accept without --verify" if ok else detail)
    check_rejected(checks, "example: flipped blob byte 0x181", p, "--verify")
    # 8. non-zero padding between blobs: --verify must fail
    check_rejected(checks, "example: non-zero padding between blobs at 0x190",
                   variant("pad-blob.g2w", edit(example, 0x190, b"\x7f")), "--verify")
    # 9. on a converted model: a flipped byte in the tensor table, and a truncation in wte
    if converted_f16:
        with open(converted_f16, "rb") as f:
            big = f.read()
        tto, tts = struct.unpack_from("<QQ", big, 48)
        data_off = struct.unpack_from("<Q", big, 72)[0]
        b = bytearray(big)
        b[tto + 9] ^= 0x10              # dims[0] of the first tensor
        check_rejected(checks, "f16 model: flipped tensor-table byte",
                       variant("model-flip.g2w", bytes(b)))
        check_rejected(checks, "f16 model: truncated inside blob 'wte.weight'",
                       variant("model-trunc.g2w", big[:data_off + 4096]))


# --------------------------------------------------------------------------------------------
# Version 1.1: quantized tensors (spec 6.4, 9.1 steps 29 and 37)

Q8_0, Q4_0 = 3, 4
QTYPES = {"q8_0": Q8_0, "q4_0": Q4_0}


def _import_reader():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import g2w_reader
    return g2w_reader


def load_quant_fixtures(checks):
    """Reads Tests/Fixtures/quant/manifest.json and every file it lists (checking sizes and
    SHA-256). Returns {name: {"shape": [...], "<file key>": bytes}} or None."""
    import hashlib
    try:
        with open(os.path.join(QUANT_FIXTURES, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        out = {}
        nfiles = nbytes = 0
        for fx in manifest["fixtures"]:
            entry = {"shape": fx["shape"]}
            for key, info in fx["files"].items():
                with open(os.path.join(QUANT_FIXTURES, info["file"]), "rb") as f:
                    data = f.read()
                if len(data) != info["bytes"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
                    raise ValueError("%s does not match manifest.json" % info["file"])
                entry[key] = data
                nfiles += 1
                nbytes += len(data)
            out[fx["name"]] = entry
        checks.record(True, rel(QUANT_FIXTURES), "%d fixtures, %d files (%d bytes) match "
                      "manifest.json (gguf %s)" % (len(out), nfiles, nbytes,
                                                   manifest["generator"]["gguf"]))
        return out
    except (OSError, ValueError, KeyError) as e:
        checks.record(False, rel(QUANT_FIXTURES), "%s: %s" % (type(e).__name__, e))
        return None


def check_positive_quant(checks, path, codes):
    """Both readers must print equal --json, or g2w-inspect must reject the file as a 1.0
    reader does (spec 11): naming the element type code it does not implement."""
    ok, detail, a, _ = both_json(path)
    if ok:
        return checks.record(True, rel(path), "--json equal (%d tensors, g2w-inspect reads "
                             "1.1)" % len(a["tensors"]))
    rc1, _, err1 = run(inspect_cmd(path, "--json"))
    rc2, out2, err2 = run(reader_cmd(path, "--json"))
    low = err1.lower()
    named = any(("code %d" % c) in low for c in codes)
    if rc1 != 0 and rc2 == 0 and named:
        return checks.record(True, rel(path), "g2w_reader reads it; g2w-inspect rejects it as a "
                             "1.0 reader must, naming the unknown dtype code")
    return checks.record(False, rel(path), detail)


def check_quant_values(checks, path, expect, minor=1):
    """Module API: the file opens, is labelled 1.<minor>, verifies, and every tensor named in
    `expect` ({tensor name: (dtype, shape, dequantized float32 bytes)}) reads back bit for bit."""
    g2w_reader = _import_reader()
    try:
        g = g2w_reader.read_g2w(path)
        problems = []
        if g.header["version_minor"] != minor:
            problems.append("version_minor %d" % g.header["version_minor"])
        g.verify()
        for name, (dtype, shape, want) in expect.items():
            t = g.tensor(name)
            if t.dtype != dtype or t.shape != shape:
                problems.append("%s is %s %s" % (name, t.dtype, t.shape))
                continue
            vals = g.tensor_values(t)
            got = struct.pack("<%df" % len(vals), *vals)
            if got != want:
                i = next(j for j in range(0, len(got), 4) if got[j:j + 4] != want[j:j + 4]) // 4
                problems.append("%s element %d: %r, gguf %r" % (
                    name, i, vals[i], struct.unpack_from("<f", want, 4 * i)[0]))
        ok = not problems
        n = sum(len(w) // 4 for _, _, w in expect.values())
        detail = ("opens as 1.%d, verifies, %d tensors (%d values) equal gguf's dequantize bit for "
                  "bit" % (minor, len(expect), n)) if ok else "; ".join(problems)
    except Exception as e:  # noqa: BLE001 - report anything as a failed check
        ok, detail = False, "%s: %s" % (type(e).__name__, e)
    return checks.record(ok, rel(path) + " (module API)", detail)


def check_rejected_quant(checks, label, path, needles, *flags):
    """Both readers reject; the Python reader's message contains every string of `needles`."""
    rc1, _, err1 = run(inspect_cmd(path, *flags))
    rc2, _, err2 = run(reader_cmd(path, *flags))
    msg2 = err2.strip().splitlines()[-1] if err2.strip() else ""
    missing = [n for n in needles if n not in msg2]
    ok = rc1 != 0 and rc2 != 0 and "Traceback" not in err2 and not missing
    for marker in ("invalid .g2w file: ", "verify failed: "):
        if marker in msg2:
            msg2 = msg2.split(marker, 1)[1]
    if ok:
        detail = "both reject: " + (msg2 if len(msg2) <= 130 else msg2[:127] + "...")
    else:
        detail = "g2w-inspect exit %d, g2w_reader exit %d%s | %s | %s" % (
            rc1, rc2, (", message lacks %r" % missing) if missing else "", err1.strip()[:200],
            err2.strip()[-300:])
    return checks.record(ok, "%s [%s]" % (label, " ".join(flags) or "open"), detail)


def quant_checks(checks, tmp):
    fx = load_quant_fixtures(checks)
    if fx is None:
        return
    f32 = lambda *xs: struct.pack("<%df" % len(xs), *xs)   # noqa: E731
    names = list(fx)                      # awkward, gpt2_like, spec_example, underflow

    def path(name):
        return os.path.join(tmp, name)

    # 1. one file per type with every fixture; the dequantized values must be gguf's
    for tname, code in QTYPES.items():
        tensors = [(n, code, fx[n]["shape"], fx[n][tname]) for n in names]
        tensors.append(("bias", 0, [4], f32(0.5, -1.0, 2.0, -0.0)))
        p = write_g2w(path("quant-%s.g2w" % tname), [meta("x.note", 5, b"1.1")], tensors, minor=1)
        check_positive_quant(checks, p, [code])
        check_quant_values(checks, p, {n: (tname, fx[n]["shape"], fx[n][tname + ".dequant"])
                                       for n in names})

    # 2. mixed types and ranks: the same blocks seen as rank 1, 3 and 4 tensors (a block never
    #    crosses the last dimension, so only the shape changes, not the bytes)
    g = fx["gpt2_like"]
    mixed = [
        ("w.f16", 1, [2, 3], struct.pack("<6e", 1, 2, 3, -1, 0.5, 0.25)),
        ("w.q8_0 rank 1", Q8_0, [3072], g["q8_0"]),
        ("w.q4_0 rank 3", Q4_0, [4, 24, 32], g["q4_0"]),
        ("w.q8_0 rank 4", Q8_0, [2, 2, 3, 256], g["q8_0"]),
        ("b", 0, [3], f32(1, 2, 3)),
    ]
    p = write_g2w(path("quant-mixed.g2w"), [], mixed, minor=1)
    check_positive_quant(checks, p, [Q8_0, Q4_0])
    check_quant_values(checks, p, {
        "w.q8_0 rank 1": ("q8_0", [3072], g["q8_0.dequant"]),
        "w.q4_0 rank 3": ("q4_0", [4, 24, 32], g["q4_0.dequant"]),
        "w.q8_0 rank 4": ("q8_0", [2, 2, 3, 256], g["q8_0.dequant"])})

    # 3. what the open checks must reject
    q8, q4 = g["q8_0"], g["q4_0"]          # [4, 768]: 96 blocks
    nb = 96

    def with_scale(blob, qbytes, block, bits):
        b = bytearray(blob)
        struct.pack_into("<H", b, qbytes * nb + 2 * block, bits)
        return bytes(b)

    # cols not a multiple of 32, although the element count is (2 x 48 = 3 blocks)
    check_rejected_quant(checks, "q8_0 [2, 48]: cols 48 not a multiple of 32",
                         write_g2w(path("q-cols48.g2w"), [], [("w48", Q8_0, [2, 48],
                                                               bytes(3 * 34))], minor=1),
                         ["'w48'", "cols = 48", "D.29"])
    check_rejected_quant(checks, "q4_0 [40]: cols 40 (rank 1)",
                         write_g2w(path("q-cols40.g2w"), [], [("v40", Q4_0, [40],
                                                               bytes(18))], minor=1),
                         ["'v40'", "cols = 40", "D.29"])
    # non-finite scales, with CRCs that match (the scales check, not the CRC, must reject)
    check_rejected_quant(checks, "q8_0: NaN scale (0x7e00) in block 5",
                         write_g2w(path("q-nan.g2w"), [], [("w", Q8_0, [4, 768],
                                                            with_scale(q8, 32, 5, 0x7E00))],
                                   minor=1),
                         ["'w'", "block 5", "NaN", "E.37"])
    check_rejected_quant(checks, "q4_0: +inf scale (0x7c00) in the last block, 95",
                         write_g2w(path("q-inf.g2w"), [], [
                             ("ok", Q8_0, [4, 768], q8),
                             ("w4", Q4_0, [4, 768], with_scale(q4, 16, 95, 0x7C00))], minor=1),
                         ["'w4'", "block 95", "+inf", "E.37"])
    check_rejected_quant(checks, "q4_0: -inf scale (0xfc00) in block 0",
                         write_g2w(path("q-ninf.g2w"), [], [("w", Q4_0, [4, 768],
                                                             with_scale(q4, 16, 0, 0xFC00))],
                                   minor=1),
                         ["'w'", "block 0 ", "-inf", "E.37"])
    check_rejected_quant(checks, "q8_0: negative NaN (0xfe01) in block 64",
                         write_g2w(path("q-nnan.g2w"), [], [("w", Q8_0, [4, 768],
                                                             with_scale(q8, 32, 64, 0xFE01))],
                                   minor=1),
                         ["'w'", "block 64", "NaN", "E.37"])
    # wrong byte_length: ggml's quants without scales, two bytes too many, f16's length
    for label, code, blob, fname in (
            ("q8_0: byte_length nb x 32 (no scales region)", Q8_0, q8[:nb * 32], "q-short.g2w"),
            ("q4_0: byte_length nb x 18 + 2", Q4_0, q4 + bytes(2), "q-long.g2w"),
            ("q8_0: byte_length of f16 (elements x 2)", Q8_0, bytes(4 * 768 * 2), "q-f16len.g2w")):
        p = write_g2w(path(fname), [], [("w", code, [4, 768], blob)], minor=1)
        check_rejected_quant(checks, label, p, ["'w'", "byte_length", "blocks x", "D.29"])
    # a quantized tensor in a file labelled 1.0
    check_rejected_quant(checks, "q8_0 tensor in a file labelled 1.0",
                         write_g2w(path("q-minor0.g2w"), [], [("w", Q8_0, [4, 768], q8)], minor=0),
                         ["'w'", "version 1.1", "1.0", "D.29"])
    # element type codes this reader does not implement: 2 (reserved for bf16), 5, 255
    for code in (2, 5, 255):
        check_rejected_quant(checks, "dtype code %d" % code,
                             write_g2w(path("q-code%d.g2w" % code), [],
                                       [("w", code, [4, 32], bytes(4 * 32 * 2))], minor=1),
                             ["'w'", "code %d " % code, "D.26"])
    # a flipped quant byte: opens (the scales are fine), --verify finds it
    b = bytearray(q4)
    b[100] ^= 0x11
    p = write_g2w(path("q-flip.g2w"), [], [("w", Q4_0, [4, 768], q4)], minor=1)
    with open(p, "r+b") as f:
        data = f.read()
        off = struct.unpack_from("<Q", data, struct.unpack_from("<Q", data, 48)[0] + 40)[0]
        f.seek(off + 100)
        f.write(bytes([b[100]]))
    g2w_reader = _import_reader()
    try:
        g2w_reader.read_g2w(p)
        opened = True
    except g2w_reader.G2WError:
        opened = False
    checks.record(opened, "q4_0: flipped quant byte [open]",
                  "opens (only the scales are checked at open)" if opened else "rejected at open")
    check_rejected_quant(checks, "q4_0: flipped quant byte", p, ["'w'", "CRC-32C"], "--verify")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", metavar="DIR", help="write the temporary files to DIR and keep them")
    args = ap.parse_args()

    checks = Checks()
    for tool in (INSPECT, CONVERT):
        if not os.access(tool, os.X_OK):
            checks.record(False, rel(tool), "not found: run `swift build -c release` first")
    if checks.failed:
        print("%d passed, %d failed" % (checks.passed, checks.failed))
        return 1

    global TMP
    tmp_ctx = None
    if args.keep:
        tmp = os.path.abspath(args.keep)
        os.makedirs(tmp, exist_ok=True)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="g2w-check-reader-")
        tmp = tmp_ctx.name
    TMP = os.path.abspath(tmp)
    try:
        files = [EXAMPLE]
        converted = {}
        for dtype in ("f32", "f16"):
            out = os.path.join(tmp, "tiny-%s.g2w" % dtype)
            rc, _, err = run([CONVERT, TINY_MODEL, "-o", out, "--dtype", dtype, "--force", "-q"])
            if checks.record(rc == 0 and os.path.isfile(out),
                             "g2w-convert --dtype %s %s" % (dtype, rel(TINY_MODEL)),
                             "wrote %s" % os.path.basename(out) if rc == 0
                             else "exit %d: %s" % (rc, err.strip()[:300])):
                files.append(out)
                converted[dtype] = out
        if os.path.isfile(SHAKESPEARE):
            files.append(SHAKESPEARE)
        files += crafted_files(tmp)

        for path in files:
            check_positive(checks, path)
        check_example_values(checks)
        check_verify(checks, EXAMPLE)
        if "f16" in converted:
            check_verify(checks, converted["f16"])
        negative_checks(checks, tmp, converted.get("f16"))
        quant_checks(checks, tmp)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    print("%d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
