#!/usr/bin/env python3
"""Generate Tests/Fixtures/quant/: q8_0 / q4_0 reference encodings made by ggml's own Python
quantizer (`gguf.quants` from the `gguf` package on PyPI), in the g2w 1.1 split layout.

For each fixture NAME (a float32 matrix, row-major) the directory holds, all little-endian:

  NAME.f32                 the input, float32
  NAME.q8_0                the q8_0 blob as a .g2w 1.1 file stores it (spec/g2w.md 6.4):
                           the quants region (element_count int8 bytes) then the scales
                           region (nb binary16 values), byte_length = nb x 34
  NAME.q4_0                the q4_0 blob: quants region (nb x 16 bytes, byte j of block b =
                           element 32b+j in the low nibble, 32b+16+j in the high nibble) then
                           the scales region (nb binary16), byte_length = nb x 18
  NAME.q8_0.dequant.f32    gguf's dequantize() of the q8_0 encoding, float32
  NAME.q4_0.dequant.f32    gguf's dequantize() of the q4_0 encoding, float32

and manifest.json lists every fixture (shape, block count, what its rows hold) and every
file (bytes, SHA-256), with the versions of gguf, numpy and Python that made them.

gguf writes ggml's interleaved blocks (q8_0: 2-byte scale + 32 quants = 34 bytes; q4_0: 2-byte
scale + 16 bytes = 18 bytes); this script only moves the bytes apart (all quants, then all
scales) and checks that the move is lossless. It also re-derives every block with a literal,
element-by-element float32 transcription of the writer rules of spec/g2w.md 6.4 and asserts
that they give the same bytes as gguf, so the spec's rounding rules and the peer agree on
every fixture block.

Usage:
  python3 tools/make_quant_fixtures.py [--out Tests/Fixtures/quant]   write the fixtures
  python3 tools/make_quant_fixtures.py --check                        regenerate in memory and
                                                                      compare with the files
Needs numpy and gguf (`pip install gguf`). Deterministic: fixed seeds.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import warnings

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize
except ImportError:                                  # pragma: no cover
    sys.exit("make_quant_fixtures.py: needs the gguf package (pip install gguf)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "Tests", "Fixtures", "quant")
BLOCK = 32
TYPES = {
    # name: (gguf type, ggml block bytes, quants bytes per block)
    "q8_0": (GGMLQuantizationType.Q8_0, 34, 32),
    "q4_0": (GGMLQuantizationType.Q4_0, 18, 16),
}
F32 = np.float32


# --------------------------------------------------------------------------------------------
# The inputs

def awkward():
    """[9, 96]: 27 blocks, each row three blocks of 32; AWKWARD_ROWS says what each holds."""
    rng = np.random.default_rng(20240611)
    x = np.zeros((9, 96), dtype=F32)

    # row 0: normal(0, 1) with three outliers
    x[0] = rng.standard_normal(96).astype(F32)
    x[0, 7], x[0, 40], x[0, 77] = 9.5, -14.25, 31.0

    # row 1: zeros. Block 0 all +0.0; block 1 starts with -0.0; block 2 all -0.0
    x[1, 32] = -0.0
    x[1, 64:96] = -0.0

    # row 2: signs and ties of the largest magnitude
    b = rng.uniform(-2.9, 2.9, 32).astype(F32)
    b[5] = -3.0                                   # max |x| is negative
    x[2, 0:32] = b
    b = rng.uniform(-1.9, 1.9, 32).astype(F32)
    b[3], b[20] = 2.0, -2.0                       # tie, positive first
    x[2, 32:64] = b
    b = rng.uniform(-1.4, 1.4, 32).astype(F32)
    b[1], b[30] = -1.5, 1.5                       # tie, negative first: q4_0 clips +1.5 to 15
    x[2, 64:96] = b

    # row 3: rounding half-points
    # block 0: q8_0 with d = 127/127 = 1 exactly: x * id = x, so k + 0.5 lands on the tie
    b = np.array([127, -0.5, 0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5, 126.5, -126.5, 63.5,
                  -63.5, 0.49999997, -0.49999997, 0.50000006, 64.5, -64.5, 100.5, -100.5,
                  7.5, -7.5, 8.5, -8.5, 0, -0.0, 1, -1, 125.5, -125.5, 31.5, -127],
                 dtype=F32)
    x[3, 0:32] = b
    # block 1: q4_0 with d = -8 / -8 = 1 exactly: nibble = trunc(x + 8.5)
    b = np.array([-8, -7.5, -0.5, 0.5, 7.5, 7.0, -8.0, 6.5, -6.5, 1.5, -1.5, 0, -0.0,
                  7.4999995, -7.4999995, 0.49999997, -0.49999997, 3.5, -3.5, 5.5, -5.5,
                  2.5, -2.5, 4.5, -4.5, 6.9999995, -7.9999995, 1, -1, 7.75, -7.75, 0.25],
                 dtype=F32)
    x[3, 32:64] = b
    # block 2: d not a power of two. q8_0: amax 1 -> d = 1/127 (float32), elements 1..15 are
    # float32((k + 0.5) / 127): whether x * id rounds to k + 0.5, just below or just above
    # decides the quant. q4_0: m = 1 -> d = -1/8, elements 16..31 are (j + 0.5) / 8.
    b = np.empty(32, dtype=F32)
    b[0] = 1.0
    ks = [-127, -100, -64, -33, -17, -2, -1, 0, 1, 2, 17, 33, 64, 100, 126]
    b[1:16] = [F32((k + 0.5) / 127) for k in ks]
    b[16:32] = [(j + 0.5) / 8 for j in range(-8, 8)]
    x[3, 64:96] = b

    # row 4: tiny values
    # block 0: float32 subnormals next to normal values: the subnormals quantize to 0
    b = (rng.standard_normal(32) * 1e-4).astype(F32)
    b[0] = 1e-3
    b[1:9] = np.array([1e-40, -3e-42, 1.4e-45, -1.4e-45, 1e-39, -1.1754942e-38, 1e-38, 5e-7],
                      dtype=F32)
    x[4, 0:32] = b
    # block 1: the binary16 scale is subnormal (amax 3e-5: q8_0 d = 2.4e-7, q4_0 d = -3.75e-6)
    b = rng.uniform(-2.9e-5, 2.9e-5, 32).astype(F32)
    b[11] = 3e-5
    x[4, 32:64] = b
    # block 2: the binary16 scale underflows to 0 (quants non-zero, values dequantize to 0)
    b = rng.uniform(-9e-31, 9e-31, 32).astype(F32)
    b[2] = 1e-30
    x[4, 64:96] = b

    # row 5: large values
    x[5, 0:32] = rng.uniform(-6e4, 6e4, 32).astype(F32)
    x[5, 0 + 9] = -6e4                            # largest magnitude, negative
    b = rng.uniform(-6e4, 6e4, 32).astype(F32)
    b[30] = 65504.0                               # binary16 max
    x[5, 32:64] = b
    # block 2: q8_0 d = 127.06201171875 / 127 = 1 + 2^-11 exactly, halfway between two
    # binary16 values: round-to-nearest-even gives 1.0 (down)
    b = rng.uniform(-100, 100, 32).astype(F32)
    b[17] = 127.0 * (1 + 2.0 ** -11)
    x[5, 64:96] = b

    # row 6: more binary16 ties of the scale
    # block 0: q8_0 d = 1 + 3 * 2^-11: the tie rounds up to 1 + 2^-9
    b = rng.uniform(-100, 100, 32).astype(F32)
    b[0] = -127.0 * (1 + 3 * 2.0 ** -11)
    x[6, 0:32] = b
    # block 1: q4_0 d = -8.0078125 / -8 = 1 + 2^-11 (rounds down to 1.0)
    b = rng.uniform(-7, 7, 32).astype(F32)
    b[25] = -8.0 * (1 + 2.0 ** -11)
    x[6, 32:64] = b
    # block 2: q4_0 d = 1 + 3 * 2^-11 (rounds up)
    b = rng.uniform(-7, 7, 32).astype(F32)
    b[31] = -8.0 * (1 + 3 * 2.0 ** -11)
    x[6, 64:96] = b

    # row 7: values whose quant depends on doing the arithmetic exactly as the spec says
    # (float32 product x * id, then for q4_0 a separately rounded float32 "+ 8.5"): a float64
    # computation, x / d instead of x * id, or a fused multiply-add gives another quant.
    x[7, 0:32] = [1.0] + _sensitive_q8_0(31)          # q8_0: d = 1/127, id = 127
    x[7, 32:64] = [3.0] + _sensitive_q4_0(3.0, 31)    # q4_0: d = -0.375, id = -2.6666667
    x[7, 64:96] = [0.3] + _sensitive_q4_0(0.3, 31)    # q4_0: d = -0.0375

    # row 8
    # block 0: what a compiler's algebra (-ffast-math, -freciprocal-math) would compute
    # differs: 1/(amax/127) != 127/amax and amax/127 != amax * (1/127) in float32; the
    # elements sit next to half-points, where the quant depends on which id is used.
    x[8, 0:32] = _sensitive_reciprocal(31)
    # block 1: q8_0 d = amax / 127 is a float32 subnormal but 1/d is finite (amax 1e-36):
    # flushing subnormals to zero (-ffast-math, FTZ/DAZ) makes d 0 and every quant 0
    b = rng.uniform(-1e-36, 1e-36, 32).astype(F32)
    b[4] = 1e-36
    x[8, 32:64] = b
    # block 2: all equal but the last, whose magnitude is larger: the maximum is the last
    # element (-0.70000005), every quant is at the end of its range
    x[8, 64:96] = -0.7
    x[8, 95] = np.nextafter(F32(-0.7), F32(-1))
    return x


def _neighbours(c, n):
    """float32 c and its n nearest float32 neighbours on each side."""
    out = [c]
    lo = hi = c
    for _ in range(n):
        lo = np.nextafter(lo, F32(-np.inf))
        hi = np.nextafter(hi, F32(np.inf))
        out += [lo, hi]
    return out


def _sensitive_q8_0(count):
    """Elements of a block with amax 1 whose float32 quant differs from a float64 one."""
    d = F32(F32(1) / F32(127))
    idv = F32(F32(1) / d)
    found = []
    for k in range(-127, 127):
        for v in _neighbours(F32((k + 0.5) * float(d)), 2):
            if abs(v) >= 1:
                continue
            p32 = float(F32(v * idv))
            p64 = float(v) * float(idv)
            r32 = math.copysign(math.floor(abs(p32) + 0.5), p32)
            r64 = math.copysign(math.floor(abs(p64) + 0.5), p64)
            if r32 != r64 and float(v) not in found:
                found.append(float(v))
    assert len(found) >= count, len(found)
    step = len(found) / count
    return [found[int(i * step)] for i in range(count)]


def _sensitive_reciprocal(count):
    """A q8_0 block: amax, then `count` elements whose quant changes if id is computed as
    127/amax or 1/(amax * (1/127)) instead of 1/(amax/127)."""
    amax = F32(0.05)
    while True:
        d = F32(amax / F32(127))
        ids = [F32(F32(1) / d), F32(F32(127) / amax),
               F32(F32(1) / F32(amax * F32(F32(1) / F32(127))))]
        if len(set(float(v) for v in ids)) == 3:
            break
        amax = np.nextafter(amax, F32(1))
    found = []

    def q(v, idv):
        p = float(F32(v * idv))
        return math.copysign(math.floor(abs(p) + 0.5), p)

    for k in range(-126, 126):
        for v in _neighbours(F32((k + 0.5) * float(d)), 3):
            if abs(v) < amax and len(set(q(v, i) for i in ids)) > 1 and float(v) not in found:
                found.append(float(v))
    assert len(found) >= count, len(found)
    step = len(found) / count
    return [float(amax)] + [found[int(i * step)] for i in range(count)]


def _sensitive_q4_0(m, count):
    """Elements of a block whose largest |x| is m whose float32 nibble differs from a float64
    one (trunc(x * id + 8.5) in binary64)."""
    d = F32(F32(m) / F32(-8))
    idv = F32(F32(1) / d)
    found = []
    for k in range(0, 17):
        for v in _neighbours(F32((k - 8.5) / float(idv)), 8):
            if abs(v) >= abs(m):
                continue
            n32 = min(15, math.trunc(float(F32(F32(v * idv) + F32(8.5)))))
            n64 = min(15, math.trunc(float(v) * float(idv) + 8.5))
            if n32 != n64 and float(v) not in found:
                found.append(float(v))
    assert len(found) >= count, len(found)
    step = len(found) / count
    return [found[int(i * step)] for i in range(count)]


AWKWARD_ROWS = [
    "row 0: normal(0, 1), outliers 9.5 (element 7), -14.25 (40), 31 (77)",
    "row 1: zeros; block 0 all +0.0, block 1 starts with -0.0, block 2 all -0.0",
    "row 2: block 0 largest |x| negative (-3); block 1 tie +2 (first) / -2; block 2 tie -1.5 "
    "(first) / +1.5 (q4_0 clips +1.5 to nibble 15)",
    "row 3: half-points; block 0 q8_0 with d = 1 (x = k + 0.5); block 1 q4_0 with d = 1 "
    "(x + 8.5 integral); block 2 q8_0 d = 1/127 with x = (k + 0.5)/127, q4_0 d = -1/8",
    "row 4: tiny; block 0 float32 subnormals beside 1e-3; block 1 subnormal binary16 scale "
    "(amax 3e-5); block 2 scale underflows to 0 (amax 1e-30)",
    "row 5: large; block 0 up to 6e4 (largest -6e4); block 1 max 65504; block 2 q8_0 scale "
    "1 + 2^-11, a binary16 tie (rounds down)",
    "row 6: binary16 ties; block 0 q8_0 d = 1 + 3*2^-11 (rounds up); block 1 q4_0 d = 1 + "
    "2^-11 (down); block 2 q4_0 d = 1 + 3*2^-11 (up)",
    "row 7: arithmetic-sensitive; block 0 q8_0 (amax 1), block 1 q4_0 (max 3), block 2 q4_0 "
    "(max 0.3): 31 elements each whose quant differs if x * id (and x * id + 8.5) is not "
    "computed as two separately rounded float32 operations (float64, x / d, or an FMA)",
    "row 8: block 0 1/(amax/127) != 127/amax != 1/(amax * (1/127)) in float32, elements "
    "near half-points (catches -ffast-math's algebra); block 1 q8_0 d a float32 subnormal "
    "with 1/d finite (catches flush-to-zero); block 2 -0.7 everywhere but the last element, -0.70000005",
]


def gpt2_like():
    """[4, 768]: GPT-2-like weights, normal(0, 0.02)."""
    rng = np.random.default_rng(768)
    return (rng.standard_normal((4, 768)) * 0.02).astype(F32)


def spec_example():
    """[1, 32]: the block of spec/g2w.md 6.4.4: x_j = j/4 - 2."""
    return (np.arange(32, dtype=F32) / 4 - 2).reshape(1, 32)


def underflow():
    """[1, 96]: blocks whose inverse scale 1/d overflows float32 (d nonzero but below 2^-128).

    Block 0: amax 1e-37: q8_0 d = 7.9e-40, 1/d = inf (q4_0 d = -1.25e-38, 1/d finite).
    Block 1: amax 1e-38: both q8_0 and q4_0 get 1/d = inf.
    Block 2: max 5e-38: q4_0 d = -6.25e-39 is subnormal with 1/d finite (flush-to-zero would
             make it 0); q8_0 1/d = inf.
    x * id is then +-inf (or NaN for x = 0) and gguf casts that to an integer: undefined in C,
    0 with x86's conversion instructions. The bytes here are what gguf gives on x86-64.
    """
    x = np.zeros((1, 96), dtype=F32)
    x[0, 0:32] = np.linspace(-1e-37, 1e-37, 32, dtype=F32)
    x[0, 32:64] = np.linspace(1e-38, -0.5e-38, 32, dtype=F32)
    x[0, 64:96] = np.linspace(-4e-38, 5e-38, 32, dtype=F32)
    return x


FIXTURES = [
    dict(name="awkward", make=awkward, rows=AWKWARD_ROWS,
         description="awkward values: outliers, zero rows and signed zeros, negative and tied "
                     "maxima, exact rounding half-points, float32 subnormals, subnormal and "
                     "zero binary16 scales, values up to 65504, binary16 ties of the scale"),
    dict(name="gpt2_like", make=gpt2_like,
         description="GPT-2-like weights: 4 rows x 768 columns, normal(0, 0.02), seed 768"),
    dict(name="spec_example", make=spec_example,
         description="the worked example of spec/g2w.md 6.4.4: one block, x_j = j/4 - 2"),
    dict(name="underflow", make=underflow, platform_dependent=True,
         description="blocks whose 1/d overflows float32 (amax 1e-37, 1e-38, 5e-38; the last "
                     "is also a q4_0 block with a subnormal d and finite 1/d): where 1/d is inf "
                     "gguf casts inf/NaN to an integer (undefined behaviour in C; x86-64 gives "
                     "0): bytes as gguf makes them on x86-64, those quants 0 (q4_0: nibble 0)"),
]


# --------------------------------------------------------------------------------------------
# gguf (the peer) and the split layout

def gguf_encode(x, tname):
    """gguf's interleaved blocks for float32 matrix x, as a (blocks, block_bytes) uint8 array."""
    qtype, bbytes, _ = TYPES[tname]
    with warnings.catch_warnings():
        # the underflow fixture makes numpy warn about inf/NaN; that is what it is for
        warnings.simplefilter("ignore", RuntimeWarning)
        q = quantize(x, qtype)
    return np.ascontiguousarray(q).reshape(-1, bbytes)


def split_layout(blocks, tname):
    """ggml's interleaved blocks -> g2w 1.1 blob: all quants, then all scales."""
    _, bbytes, qbytes = TYPES[tname]
    assert blocks.shape[1] == bbytes
    scales = blocks[:, :2].reshape(-1)
    quants = blocks[:, 2:].reshape(-1)
    assert quants.size == blocks.shape[0] * qbytes
    return quants.tobytes() + scales.tobytes()


def interleave(blob, nb, tname):
    """The inverse of split_layout."""
    _, bbytes, qbytes = TYPES[tname]
    assert len(blob) == nb * bbytes
    q = np.frombuffer(blob, dtype=np.uint8, count=nb * qbytes).reshape(nb, qbytes)
    s = np.frombuffer(blob, dtype=np.uint8, offset=nb * qbytes).reshape(nb, 2)
    return np.concatenate([s, q], axis=1)


# --------------------------------------------------------------------------------------------
# Literal float32 transcription of spec/g2w.md 6.4.3 (writers), element by element, and of
# the decoding rule of 6.4.1 / 6.4.2. Shares nothing with gguf.

def _f16_bits(v):
    return int(np.array([v], dtype=F32).astype(np.float16).view(np.uint16)[0])


def spec_q8_0_block(xs):
    xs = [F32(v) for v in xs]
    amax = F32(0)
    for v in xs:
        amax = max(amax, F32(abs(v)))
    d = F32(amax / F32(127))
    idv = F32(F32(1) / d) if d != 0 else F32(0)
    q = []
    for v in xs:
        p = F32(v * idv)                                   # rounded to float32
        if not math.isfinite(p):                           # 1/d overflowed (see underflow())
            q.append(0)
            continue
        a = abs(float(p))
        r = math.floor(a + 0.5)                            # round half away from zero (exact:
        q.append(int(-r if p < 0 else r))                  # a + 0.5 is exact in binary64)
    return bytes(v & 0xFF for v in q), _f16_bits(d)


def spec_q4_0_block(xs):
    xs = [F32(v) for v in xs]
    m = xs[0]
    for v in xs[1:]:
        if abs(v) > abs(m):                                # strictly larger: first one on ties
            m = v
    d = F32(m / F32(-8))
    idv = F32(F32(1) / d) if d != 0 else F32(0)
    nib = []
    for v in xs:
        s = F32(F32(v * idv) + F32(8.5))                   # two float32 roundings, no FMA
        nib.append(0 if not math.isfinite(s) else min(15, math.trunc(float(s))))
    out = bytes(nib[j] | (nib[j + 16] << 4) for j in range(16))
    return out, _f16_bits(d)


def check_against_spec(x, blob, tname):
    """Every block of gguf's encoding equals the literal transcription of the spec."""
    flat = x.reshape(-1)
    nb = flat.size // BLOCK
    qbytes = TYPES[tname][2]
    scales = np.frombuffer(blob, dtype="<u2", offset=nb * qbytes)
    fn = spec_q8_0_block if tname == "q8_0" else spec_q4_0_block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for b in range(nb):
            q, s = fn(flat[b * BLOCK:(b + 1) * BLOCK])
            if q != blob[b * qbytes:(b + 1) * qbytes] or s != int(scales[b]):
                raise AssertionError("%s block %d: spec transcription %s/%04x, gguf %s/%04x"
                                     % (tname, b, q.hex(), s,
                                        blob[b * qbytes:(b + 1) * qbytes].hex(), scales[b]))


def decode_split(blob, nb, tname):
    """Dequantizes a split-layout blob per spec 6.4 (value = d_b * q): float32 array."""
    qbytes = TYPES[tname][2]
    d = np.frombuffer(blob, dtype="<f2", offset=nb * qbytes).astype(F32)
    if tname == "q8_0":
        q = np.frombuffer(blob, dtype=np.int8, count=nb * 32).reshape(nb, 32)
    else:
        raw = np.frombuffer(blob, dtype=np.uint8, count=nb * 16).reshape(nb, 16)
        q = np.concatenate([raw & 0x0F, raw >> 4], axis=1).astype(np.int8) - 8
    return (d.reshape(nb, 1) * q.astype(F32)).reshape(-1)


# --------------------------------------------------------------------------------------------

def sha256(b):
    return hashlib.sha256(b).hexdigest()


def build():
    """Returns ({file name: bytes}, manifest dict)."""
    files = {}
    entries = []
    for fx in FIXTURES:
        name = fx["name"]
        x = fx["make"]()
        assert x.dtype == F32 and x.ndim == 2 and x.shape[1] % BLOCK == 0
        nb = x.size // BLOCK
        entry = {"name": name, "shape": list(x.shape), "blocks": nb,
                 "description": fx["description"]}
        if "rows" in fx:
            entry["rows"] = fx["rows"]
        if fx.get("platform_dependent"):
            entry["platform_dependent"] = True
        out = {}
        fname = name + ".f32"
        files[fname] = x.astype("<f4").tobytes()
        out["f32"] = fname
        for tname in ("q8_0", "q4_0"):
            blocks = gguf_encode(x, tname)
            assert blocks.shape[0] == nb
            blob = split_layout(blocks, tname)
            assert np.array_equal(interleave(blob, nb, tname), blocks)
            assert len(blob) == nb * TYPES[tname][1]
            check_against_spec(x, blob, tname)
            deq = dequantize(blocks.reshape(x.shape[0], -1), TYPES[tname][0])
            deq = np.ascontiguousarray(deq, dtype=F32).reshape(-1)
            mine = decode_split(blob, nb, tname)
            assert mine.tobytes() == deq.tobytes(), "%s %s: split decode != gguf" % (name, tname)
            files[name + "." + tname] = blob
            files[name + "." + tname + ".dequant.f32"] = deq.astype("<f4").tobytes()
            out[tname] = name + "." + tname
            out[tname + ".dequant"] = name + "." + tname + ".dequant.f32"
            entry["ggml_interleaved_sha256_" + tname] = sha256(blocks.tobytes())
        entry["files"] = {k: {"file": v, "bytes": len(files[v]), "sha256": sha256(files[v])}
                          for k, v in out.items()}
        entries.append(entry)
    manifest = {
        "description": "q8_0 / q4_0 encodings by ggml's Python quantizer (gguf.quants) in the "
                       "g2w 1.1 split layout of spec/g2w.md 6.4 (quants region, then scales "
                       "region), with gguf's dequantized values. All files little-endian, "
                       "row-major; made by tools/make_quant_fixtures.py.",
        "layout": {
            "f32": "float32, element_count x 4 bytes",
            "q8_0": "element_count int8 quants, then nb binary16 scales; nb = element_count/32",
            "q4_0": "nb x 16 bytes of nibbles (byte j of block b: element 32b+j low nibble, "
                    "32b+16+j high nibble), then nb binary16 scales",
            "dequant.f32": "float32 from gguf.quants.dequantize (exact: d x q is representable)",
        },
        "notes": [
            "gguf's q4_0 takes m = the first element of largest |x|; in a block of zeros that is "
            "element 0, so d = -0 (scale 0x8000) if it is +0.0 and +0 (0x0000) if it is -0.0 "
            "(awkward blocks 4 and 5). ggml's C quantize_row_q4_0_ref starts from m = +0 and "
            "writes 0x8000 for every block of zeros; the two agree on all other blocks here.",
            "Dequantized zeros keep IEEE signs: a q4_0 nibble 8 under a negative scale decodes "
            "to -0.0, and so does any quant 0 under a -0 scale.",
            "underflow is platform-dependent in gguf (inf/NaN cast to an integer); the other "
            "fixtures are not.",
            "awkward rows 7 and 8 change under an FMA for x*id + 8.5, float64 arithmetic, "
            "x/d, 127/amax, or flush-to-zero: a quantizer that matches them computes as spec "
            "6.4.3 says.",
        ],
        "generator": {
            "gguf": gguf.__version__ if hasattr(gguf, "__version__") else _dist_version("gguf"),
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "fixtures": entries,
    }
    return files, manifest


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:                                   # pragma: no cover
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (%(default)s)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and compare with the files in --out; write "
                         "nothing")
    args = ap.parse_args()
    files, manifest = build()
    total = sum(len(b) for b in files.values())
    if args.check:
        bad = []
        for fname, data in sorted(files.items()):
            p = os.path.join(args.out, fname)
            try:
                with open(p, "rb") as f:
                    if f.read() != data:
                        bad.append(fname + " differs")
            except OSError as e:
                bad.append("%s: %s" % (fname, e.strerror))
        try:
            with open(os.path.join(args.out, "manifest.json")) as f:
                old = json.load(f)
            if old["fixtures"] != manifest["fixtures"]:
                bad.append("manifest.json fixtures differ")
            if old["generator"] != manifest["generator"]:
                print("note: made with %s, this run has %s" % (old["generator"],
                                                               manifest["generator"]))
        except (OSError, ValueError, KeyError) as e:
            bad.append("manifest.json: %s" % e)
        for line in bad:
            print("DIFF  " + line)
        print("%d files, %d bytes: %s" % (len(files), total,
                                           "identical" if not bad else "%d differ" % len(bad)))
        return 1 if bad else 0
    os.makedirs(args.out, exist_ok=True)
    for fname, data in files.items():
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(data)
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote %d files (%d bytes) and manifest.json to %s (gguf %s, numpy %s)"
          % (len(files), total, os.path.relpath(args.out, ROOT), manifest["generator"]["gguf"],
             manifest["generator"]["numpy"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
