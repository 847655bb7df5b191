#!/usr/bin/env python3
"""Cross-check: the independent Python reader (tools/g2w_reader.py, written from spec/g2w.md)
against the reference tool `g2w-inspect` (Swift), run by CI after `swift build -c release`.

For every file of a set -- the spec's worked example, the tiny test model converted with
`g2w-convert` (f32 and f16), Tests/Fixtures/shakespeare.g2w when present, and a few small
files written here by a minimal spec-following writer (every metadata value type, a header
extension, an empty file) -- both readers print `--json` and the parsed objects must be equal
(floats to a relative 1e-12; the "file" field is ignored). Both then run `--verify` on two
files, and both must reject a handful of corrupted files.

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
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    print("%d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
