#!/usr/bin/env python3
"""An independent reader of `.g2w` files, written from `spec/g2w.md` alone.

Python 3 standard library only. It shares no code with the Swift reference implementation
(Sources/G2WFormat): its purpose is to show that the specification is sufficient to read,
validate and verify a `.g2w` file.

As a module:

    import g2w_reader
    f = g2w_reader.read_g2w("model.g2w")      # every check of spec section 9.1, in order
    f.metadata_value("gpt2.n_layer")          # -> 2
    f.tensor("wte.weight").shape              # -> [50257, 64]
    f.tensor_values("h.0.ln_1.weight")        # -> list of floats (reads the blob; q8_0 and
                                              #    q4_0 tensors come back dequantized)
    f.verify()                                # spec section 9.2; raises G2WError on failure
    g2w_reader.training_state(f)              # spec section 14: a checkpoint's state, or None

As a command:

    python3 tools/g2w_reader.py FILE.g2w [--verify] [--json]

Version 1.1 of the format (block-quantized `q8_0` and `q4_0` tensors, spec section 6.4) is
implemented: at open, a quantized tensor's last dimension must be a multiple of 32, its
byte_length must be that of its blocks, and every scale must be finite (spec 9.1 step 37, the
one check that reads from the data section: the scales regions only).

`--json` prints the same JSON object as `g2w-inspect --json` (so the two can be compared).
Exit status: 0 ok, 1 invalid file or failed verification, 2 usage error.

Errors are raised as `G2WError`, whose message names the section of the file, the field,
the step of spec section 9.1 that failed, and the file offset where there is one.
"""

import argparse
import json
import math
import os
import stat
import struct
import sys
import unicodedata
from array import array

__all__ = [
    "G2WError", "G2WFile", "MetadataEntry", "Tensor", "read_g2w", "crc32c", "to_json_object",
    "format_json", "training_state", "dequantize",
]

# --------------------------------------------------------------------------------------------
# Constants (spec sections 4, 5.2, 6.2, 8)

MAGIC = b"\x89G2W\r\n\x1a\n"
BYTE_ORDER_MARK = 0x01020304
BYTE_ORDER_MARK_SWAPPED = 0x04030201
SUPPORTED_MAJOR = 1
FIXED_HEADER_SIZE = 128
ALIGNMENT = 64
MAX_DATA_OFFSET = 268_435_456          # 256 MiB: bound of the header region
MAX_TENSOR_COUNT = 65_536
MAX_METADATA_COUNT = 65_536
MAX_ELEMENTS = (1 << 60) - 1
U64_MAX = (1 << 64) - 1
TENSOR_ENTRY_FIXED = 56
CRC_FIELD_OFFSET = 96

TYPE_NAMES = {1: "u64", 2: "i64", 3: "f64", 4: "bool", 5: "string", 6: "bytes", 7: "string[]"}
# code -> (name, elements per block, bytes per block); what this reader implements (spec 6.2)
DTYPES = {0: ("f32", 1, 4), 1: ("f16", 1, 2), 3: ("q8_0", 32, 34), 4: ("q4_0", 32, 18)}
QUANT_BYTES = {3: 32, 4: 16}   # quantized types: bytes of quants per block (spec 6.4)
QBLOCK = 32
# A binary16 is NaN or an infinity when its five exponent bits are all ones: in the high byte of
# the little-endian value, (byte & 0x7C) == 0x7C. bytes.translate with this table maps such a
# high byte to 01 and any other to 00, so one find() locates the first non-finite scale.
_NONFINITE_HIGH = bytes(1 if (b & 0x7C) == 0x7C else 0 for b in range(256))

KEY_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


# --------------------------------------------------------------------------------------------
# Errors

class G2WError(Exception):
    """An invalid `.g2w` file (or a failed verification).

    section: part of the file ("header", "header region", "metadata", "tensor table", "data")
    field:   the field or rule concerned (e.g. "file_size", "entry 3 key")
    offset:  absolute file offset of the offending bytes, or None
    step:    the step of spec section 9.1 ("A.7", "C.20", ...) or 9.2 ("verify"), or None
    """

    def __init__(self, section, field, message, offset=None, step=None):
        self.section = section
        self.field = field
        self.offset = offset
        self.step = step
        self.detail = message
        where = section + ": " + field
        if offset is not None:
            where += " at offset %d (0x%x)" % (offset, offset)
        if step is not None:
            where += " [spec 9.1 step %s]" % step if step != "verify" else " [spec 9.2]"
        super().__init__(where + ": " + message)


# --------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), spec section 2 and Appendix A.
#
# Reflected polynomial 0x82F63B78, init 0xFFFFFFFF, reflected in/out, xorout 0xFFFFFFFF.
# Table-driven: T[0] is the classic byte table; T[k][i] advances the CRC of byte i by k
# further zero bytes ("slicing" tables). For speed in pure Python the bulk of the data is
# processed 4 bytes at a time with two 65,536-entry tables that combine pairs of slicing
# tables (one lookup per 16 bits): for a little-endian word w,
#   x = crc ^ w;  crc = LO[x & 0xFFFF] ^ HI[x >> 16]
# with LO[i] = T[3][i & 0xFF] ^ T[2][i >> 8] and HI[i] = T[1][i & 0xFF] ^ T[0][i >> 8].

_POLY = 0x82F63B78


def _make_byte_tables():
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (_POLY if c & 1 else 0)
        t0.append(c)
    tables = [t0]
    for _ in range(3):
        prev = tables[-1]
        tables.append([(prev[i] >> 8) ^ t0[prev[i] & 0xFF] for i in range(256)])
    return tables


_T = _make_byte_tables()
_T0 = _T[0]
_WIDE = None        # (LO, HI) built on first use with enough data to pay for them
_WIDE_MIN = 4096    # below this many bytes, the byte-wise loop is used


def _wide_tables():
    global _WIDE
    if _WIDE is None:
        t0, t1, t2, t3 = _T
        lo = array("I", [t3[i & 0xFF] ^ t2[i >> 8] for i in range(65536)])
        hi = array("I", [t1[i & 0xFF] ^ t0[i >> 8] for i in range(65536)])
        _WIDE = (lo, hi)
    return _WIDE


def _crc_update(crc, data):
    """Advances a raw (pre-inverted) CRC register over `data` (bytes-like)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    t0 = _T0
    if n >= _WIDE_MIN:
        lo, hi = _wide_tables()
        body = n & ~3
        words = array("I")
        if words.itemsize != 4:                          # pragma: no cover (exotic platforms)
            words = array("L")
        words.frombytes(mv[:body])
        if sys.byteorder != "little":                    # the file is little-endian
            words.byteswap()
        for w in words:
            x = crc ^ w
            crc = lo[x & 0xFFFF] ^ hi[x >> 16]
        mv = mv[body:]
    for b in mv:
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def crc32c(data, crc=0):
    """CRC-32C of `data`; pass a previous result as `crc` to continue it incrementally."""
    return _crc_update(crc ^ 0xFFFFFFFF, data) ^ 0xFFFFFFFF


def _self_test():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    big = bytes(range(256)) * 40 + b"xyz"
    assert crc32c(big) == crc32c(big[5000:], crc32c(big[:5000]))


# --------------------------------------------------------------------------------------------
# Checked arithmetic (spec section 2): every sum/product of file values is a 64-bit unsigned
# computation whose overflow makes the file invalid. Python ints do not wrap, so "overflow"
# means "result > 2^64 - 1".

def _add(a, b):
    s = a + b
    return None if s > U64_MAX else s


def _align64(x):
    if x + 63 > U64_MAX:
        return None
    return (x + 63) & ~63


# --------------------------------------------------------------------------------------------
# Parsed structures

class MetadataEntry:
    __slots__ = ("key", "type_code", "value", "count", "raw", "offset")

    def __init__(self, key, type_code, value, count, raw, offset):
        self.key = key              # str (ASCII)
        self.type_code = type_code  # int
        self.value = value          # decoded value (int, float, bool, str, bytes, list of str)
        self.count = count          # element count for string[], byte count for bytes/unknown
        self.raw = raw              # the value's bytes
        self.offset = offset        # file offset of the entry

    @property
    def type_name(self):
        return TYPE_NAMES.get(self.type_code, "type %d" % self.type_code)

    def __repr__(self):
        return "MetadataEntry(%r, %s)" % (self.key, self.type_name)


class Tensor:
    __slots__ = ("name", "dtype_code", "dtype", "shape", "elements", "offset", "byte_length",
                 "crc32c", "entry_offset")

    def __init__(self, name, dtype_code, shape, elements, offset, byte_length, crc, entry_offset):
        self.name = name
        self.dtype_code = dtype_code
        self.dtype = DTYPES[dtype_code][0]
        self.shape = shape
        self.elements = elements
        self.offset = offset
        self.byte_length = byte_length
        self.crc32c = crc
        self.entry_offset = entry_offset

    @property
    def quantized(self):
        """True for the block-quantized types q8_0 and q4_0 (spec 6.4)."""
        return self.dtype_code in QUANT_BYTES

    @property
    def blocks(self):
        """Number of blocks: element count / 32 for q8_0 and q4_0 (element count otherwise)."""
        return self.elements // DTYPES[self.dtype_code][1]

    @property
    def scales_offset(self):
        """Absolute file offset of a quantized tensor's scales region (spec 6.4), else None."""
        if not self.quantized:
            return None
        return self.offset + self.blocks * QUANT_BYTES[self.dtype_code]

    def __repr__(self):
        return "Tensor(%r, %s, %r, offset=%d)" % (self.name, self.dtype, self.shape, self.offset)


class G2WFile:
    """A validated `.g2w` file. Only the header region has been read; blobs are read on demand."""

    def __init__(self, path, header, metadata, tensors):
        self.path = path
        self.header = header          # dict of the fixed header fields (and "file_size")
        self.metadata = metadata      # list of MetadataEntry, file order
        self.tensors = tensors        # list of Tensor, file order
        self._by_key = {m.key: m for m in metadata}
        self._by_name = {t.name: t for t in tensors}

    @property
    def file_size(self):
        return self.header["file_size"]

    def metadata_value(self, key, expected_type=None, default=KeyError):
        """Value of a metadata key. With `expected_type` ("u64", ...), a different stored type
        is an error (spec 5.3: never silently converted)."""
        entry = self._by_key.get(key)
        if entry is None:
            if default is KeyError:
                raise KeyError(key)
            return default
        if expected_type is not None and entry.type_name != expected_type:
            raise G2WError("metadata", key, "has type %s, this reader needs %s"
                           % (entry.type_name, expected_type), entry.offset)
        return entry.value

    def tensor(self, name):
        return self._by_name[name]

    def read_blob(self, name_or_tensor):
        t = name_or_tensor if isinstance(name_or_tensor, Tensor) else self._by_name[name_or_tensor]
        with open(self.path, "rb") as f:
            f.seek(t.offset)
            data = f.read(t.byte_length)
        if len(data) != t.byte_length:
            raise G2WError("data", "tensor %r" % t.name, "file is shorter than its table says",
                           t.offset)
        return data

    def tensor_values(self, name_or_tensor):
        """The tensor's elements as a flat list of Python floats (row-major, spec 6.3).

        q8_0 and q4_0 tensors are dequantized (spec 6.4): element i of block b is d_b x q. The
        product of a binary16 scale and a quant of at most 8 bits is exact in binary32, so these
        floats are exactly the float32 values any reader computes, signed zeros included."""
        t = name_or_tensor if isinstance(name_or_tensor, Tensor) else self._by_name[name_or_tensor]
        data = self.read_blob(t)
        if not t.quantized:
            fmt = "<%d%s" % (t.elements, "f" if t.dtype == "f32" else "e")
            return list(struct.unpack(fmt, data))
        return dequantize(t.dtype, data, t.elements)

    def verify(self, chunk_size=1 << 22):
        """Spec 9.2: every blob's CRC-32C and every padding byte between blobs."""
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size != self.file_size:
                raise G2WError("data", "file_size", "the file changed size since it was opened "
                               "(%d bytes, header says %d)" % (st.st_size, self.file_size),
                               step="verify")
            for i, t in enumerate(self.tensors):
                f.seek(t.offset)
                crc = 0
                left = t.byte_length
                while left:
                    chunk = f.read(min(chunk_size, left))
                    if not chunk:
                        raise G2WError("data", "tensor %r" % t.name, "unexpected end of file",
                                       t.offset + t.byte_length - left, step="verify")
                    crc = crc32c(chunk, crc)
                    left -= len(chunk)
                if crc != t.crc32c:
                    raise G2WError("data", "tensor %r" % t.name,
                                   "blob is corrupt: CRC-32C 0x%08x, table says 0x%08x"
                                   % (crc, t.crc32c), t.offset, step="verify")
                end = t.offset + t.byte_length
                nxt = self.tensors[i + 1].offset if i + 1 < len(self.tensors) else end
                if nxt > end:
                    pad = f.read(nxt - end)
                    if len(pad) != nxt - end:
                        raise G2WError("data", "padding after tensor %r" % t.name,
                                       "unexpected end of file", end, step="verify")
                    nz = next((j for j, b in enumerate(pad) if b), None)
                    if nz is not None:
                        raise G2WError("data", "padding after tensor %r" % t.name,
                                       "padding byte is 0x%02x, must be 0" % pad[nz], end + nz,
                                       step="verify")
        return True


def dequantize(dtype, blob, elements):
    """Decodes a q8_0 or q4_0 blob in the g2w layout (spec 6.4: quants region, then scales
    region) to a flat list of floats. `dtype` is "q8_0" or "q4_0"."""
    nb = elements // QBLOCK
    if dtype == "q8_0":
        qbytes = nb * 32
        scales = struct.unpack_from("<%de" % nb, blob, qbytes)
        quants = memoryview(blob)[:qbytes].cast("b")            # int8, two's complement
        out = []
        for b in range(nb):
            d = scales[b]
            out.extend([d * q for q in quants[b * 32:(b + 1) * 32]])
        return out
    if dtype == "q4_0":
        qbytes = nb * 16
        scales = struct.unpack_from("<%de" % nb, blob, qbytes)
        out = []
        for b in range(nb):
            d = scales[b]
            block = blob[b * 16:(b + 1) * 16]
            out.extend([d * ((v & 0x0F) - 8) for v in block])    # elements 32b .. 32b+15
            out.extend([d * ((v >> 4) - 8) for v in block])      # elements 32b+16 .. 32b+31
        return out
    raise ValueError("not a quantized type: %r" % (dtype,))


# --------------------------------------------------------------------------------------------
# Reading and validation: spec section 9.1, steps 1..37 in the spec's (recommended) order.

def _u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def _u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def _u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


def _utf8(raw):
    """Well-formed UTF-8 per RFC 3629 (Python's strict decoder rejects overlong forms,
    surrogates and code points above U+10FFFF). No BOM is stripped."""
    try:
        return raw.decode("utf-8", "strict")
    except UnicodeDecodeError as e:
        return e


def read_g2w(path, canonical_duplicate_names=True):
    """Opens and validates `path`; returns a G2WFile or raises G2WError (or OSError).

    canonical_duplicate_names: also reject two tensor names that are canonically equivalent
    Unicode strings (spec 6.1 allows this and the reference reader does it); with False only
    byte-identical names are duplicates.
    """
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise G2WError("file", "path", "not a regular file")
        S = st.st_size
        fixed = f.read(min(S, FIXED_HEADER_SIZE))
        header = _check_fixed_header(fixed, S)
        data_offset = header["data_offset"]
        f.seek(0)
        region = f.read(data_offset)
        if len(region) != data_offset:
            raise G2WError("header region", "data_offset", "file shrank while reading: got %d of "
                           "%d bytes" % (len(region), data_offset), len(region), "B.16")
        _check_header_region(region, header)
        metadata = _parse_metadata(region, header)
        tensors = _parse_tensor_table(region, header, canonical_duplicate_names)
        _check_scales(f, tensors)
    return G2WFile(path, header, metadata, tensors)


def _check_fixed_header(b, S):
    H = "header"
    # 1. magic (only if there are at least 8 bytes)
    if S >= 8 and b[:8] != MAGIC:
        raise G2WError(H, "magic", "not a .g2w file: the first 8 bytes are %s, expected %s"
                       % (b[:8].hex(" "), MAGIC.hex(" ")), 0, "A.1")
    # 2. truncated header
    if S < FIXED_HEADER_SIZE:
        raise G2WError(H, "fixed header", "truncated header: the file has %d bytes, the fixed "
                       "header alone needs %d" % (S, FIXED_HEADER_SIZE), S, "A.2")
    # 3. byte-order mark, before the version
    version_major, version_minor, bom = struct.unpack_from("<HHI", b, 8)
    if bom != BYTE_ORDER_MARK:
        why = ("the file is byte-swapped (written big-endian)" if bom == BYTE_ORDER_MARK_SWAPPED
               else "unknown byte order")
        raise G2WError(H, "byte_order_mark", "wrong byte order: reads 0x%08x, expected 0x%08x: %s"
                       % (bom, BYTE_ORDER_MARK, why), 12, "A.3")
    # 4. version (any minor accepted)
    if version_major != SUPPORTED_MAJOR:
        raise G2WError(H, "version_major", "unsupported version %d.%d: this reader handles "
                       "major version %d" % (version_major, version_minor, SUPPORTED_MAJOR),
                       8, "A.4")
    # 5. the remaining fields
    alignment, header_size = struct.unpack_from("<II", b, 16)
    (metadata_offset, metadata_size, metadata_count, tensor_table_offset, tensor_table_size,
     tensor_count, data_offset, data_size, file_size) = struct.unpack_from("<9Q", b, 24)
    header_crc, flags = struct.unpack_from("<II", b, 96)
    if alignment != ALIGNMENT:
        raise G2WError(H, "alignment", "is %d, must be %d" % (alignment, ALIGNMENT), 16, "A.5")
    # 6.
    if header_size < FIXED_HEADER_SIZE or header_size % 8:
        raise G2WError(H, "header_size", "is %d, must be >= 128 and a multiple of 8"
                       % header_size, 20, "A.6")
    # 7.
    if file_size != S:
        if S < file_size:
            msg = "truncated file: header says %d bytes, the file has %d" % (file_size, S)
        else:
            msg = "trailing data: header says %d bytes, the file has %d" % (file_size, S)
        raise G2WError(H, "file_size", msg, 88, "A.7")
    # 8.
    if metadata_offset != header_size:
        raise G2WError(H, "metadata_offset", "is %d, must equal header_size %d"
                       % (metadata_offset, header_size), 24, "A.8")
    # 9.
    table_expected = _add(metadata_offset, metadata_size)
    if table_expected is None:
        raise G2WError(H, "metadata_size", "metadata_offset + metadata_size overflows "
                       "(%d + %d)" % (metadata_offset, metadata_size), 32, "A.9")
    if table_expected != tensor_table_offset:
        raise G2WError(H, "tensor_table_offset", "is %d, must equal metadata_offset + "
                       "metadata_size = %d" % (tensor_table_offset, table_expected), 48, "A.9")
    # 10.
    table_end = _add(tensor_table_offset, tensor_table_size)
    if table_end is None:
        raise G2WError(H, "tensor_table_size", "tensor_table_offset + tensor_table_size "
                       "overflows (%d + %d)" % (tensor_table_offset, tensor_table_size), 56, "A.10")
    data_expected = _align64(table_end)
    if data_expected is None:
        raise G2WError(H, "tensor_table_size", "align64(end of tensor table %d) overflows"
                       % table_end, 56, "A.10")
    if data_expected != data_offset:
        raise G2WError(H, "data_offset", "is %d, must equal align64(end of tensor table %d) = %d"
                       % (data_offset, table_end, data_expected), 72, "A.10")
    # 11.
    if data_offset > MAX_DATA_OFFSET:
        raise G2WError(H, "data_offset", "limit exceeded: header region of %d bytes, at most %d"
                       % (data_offset, MAX_DATA_OFFSET), 72, "A.11")
    # 12.
    if data_offset > S:
        raise G2WError(H, "data_offset", "truncated header region: it ends at %d, the file has "
                       "%d bytes" % (data_offset, S), 72, "A.12")
    # 13.
    if data_size != S - data_offset:
        raise G2WError(H, "data_size", "is %d, must equal file_size - data_offset = %d"
                       % (data_size, S - data_offset), 80, "A.13")
    # 14.
    if tensor_count > MAX_TENSOR_COUNT:
        raise G2WError(H, "tensor_count", "limit exceeded: %d tensors, at most %d"
                       % (tensor_count, MAX_TENSOR_COUNT), 64, "A.14")
    # 15.
    if metadata_count > MAX_METADATA_COUNT:
        raise G2WError(H, "metadata_count", "limit exceeded: %d entries, at most %d"
                       % (metadata_count, MAX_METADATA_COUNT), 40, "A.15")
    return {
        "version_major": version_major, "version_minor": version_minor,
        "byte_order_mark": bom, "alignment": alignment, "header_size": header_size,
        "metadata_offset": metadata_offset, "metadata_size": metadata_size,
        "metadata_count": metadata_count, "tensor_table_offset": tensor_table_offset,
        "tensor_table_size": tensor_table_size, "tensor_count": tensor_count,
        "data_offset": data_offset, "data_size": data_size, "file_size": file_size,
        "header_crc32c": header_crc, "flags": flags,
    }


def _check_header_region(region, h):
    # 16. CRC of [0, data_offset) with bytes 96..99 as zero
    crc = crc32c(region[:CRC_FIELD_OFFSET])
    crc = crc32c(b"\0\0\0\0", crc)
    crc = crc32c(memoryview(region)[CRC_FIELD_OFFSET + 4:], crc)
    if crc != h["header_crc32c"]:
        raise G2WError("header region", "header_crc32c", "header region corrupt: CRC-32C of "
                       "bytes [0, %d) is 0x%08x, the header says 0x%08x"
                       % (h["data_offset"], crc, h["header_crc32c"]), CRC_FIELD_OFFSET, "B.16")
    # 17. zero padding between the end of the table and data_offset
    start = h["tensor_table_offset"] + h["tensor_table_size"]
    pad = region[start:h["data_offset"]]
    if pad.count(0) != len(pad):
        j = next(i for i, x in enumerate(pad) if x)
        raise G2WError("header region", "padding", "non-zero padding byte 0x%02x before the "
                       "data section" % pad[j], start + j, "B.17")


def _parse_metadata(region, h):
    S = "metadata"
    pos = h["metadata_offset"]
    end = pos + h["metadata_size"]
    entries = []
    seen = set()

    def need(n, what, at, i, step):
        if n > end - at:
            raise G2WError(S, "entry %d %s" % (i, what), "runs past the end of the metadata "
                           "section (needs %d bytes, %d left)" % (n, end - at), at, step)

    for i in range(h["metadata_count"]):
        entry_off = pos
        # 18. key_length and key
        need(2, "key_length", pos, i, "C.18")
        klen = _u16(region, pos)
        if not 1 <= klen <= 255:
            raise G2WError(S, "entry %d key_length" % i, "is %d, must be 1..255" % klen, pos,
                           "C.18")
        pos += 2
        need(klen, "key", pos, i, "C.18")
        key = region[pos:pos + klen]
        bad = next((j for j, x in enumerate(key) if x not in KEY_BYTES), None)
        if bad is not None:
            raise G2WError(S, "entry %d key" % i, "byte 0x%02x is not allowed in a key "
                           "([A-Za-z0-9._-] only): %r" % (key[bad], key), pos + bad, "C.18")
        key = key.decode("ascii")
        pos += klen
        # 19. type and value_length
        need(2, "type", pos, i, "C.19")
        tcode = _u16(region, pos)
        pos += 2
        need(8, "value_length", pos, i, "C.19")
        vlen = _u64(region, pos)
        if vlen > end - (pos + 8):
            raise G2WError(S, "entry %d (%s) value_length" % (i, key), "is %d, only %d bytes left "
                           "in the metadata section" % (vlen, end - (pos + 8)), pos, "C.19")
        pos += 8
        # 20. value
        raw = region[pos:pos + vlen]
        value, count = _decode_value(key, tcode, raw, pos)
        pos += vlen
        # 21. unique key
        if key in seen:
            raise G2WError(S, "entry %d key" % i, "duplicate key %r" % key, entry_off + 2, "C.21")
        seen.add(key)
        entries.append(MetadataEntry(key, tcode, value, count, raw, entry_off))
    # 22. nothing left
    if pos != end:
        raise G2WError(S, "metadata_size", "%d bytes left after the last of %d entries"
                       % (end - pos, h["metadata_count"]), pos, "C.22")
    return entries


def _decode_value(key, tcode, raw, at):
    """Returns (value, count). Raises for a malformed value of a defined type (spec 5.2)."""
    S = "metadata"
    field = "value of %r" % key
    n = len(raw)

    def bad(msg, off=at):
        raise G2WError(S, field, msg, off, "C.20")

    if tcode in (1, 2, 3):
        if n != 8:
            bad("type %s needs value_length 8, not %d" % (TYPE_NAMES[tcode], n))
        return struct.unpack("<" + {1: "Q", 2: "q", 3: "d"}[tcode], raw)[0], None
    if tcode == 4:
        if n != 1:
            bad("type bool needs value_length 1, not %d" % n)
        if raw[0] > 1:
            bad("bool byte is 0x%02x, must be 00 or 01" % raw[0])
        return raw[0] == 1, None
    if tcode == 5:
        s = _utf8(raw)
        if isinstance(s, UnicodeDecodeError):
            bad("string is not well-formed UTF-8 (%s)" % s.reason, at + s.start)
        return s, None
    if tcode == 6:
        return bytes(raw), n
    if tcode == 7:
        if n < 8:
            bad("string[] needs value_length >= 8, not %d" % n)
        count = _u64(raw, 0)
        if count > (n - 8) // 4:
            bad("string[] count %d cannot fit in %d bytes" % (count, n))
        items = []
        p = 8
        for j in range(count):
            if 4 > n - p:
                bad("string[] element %d length runs past the value" % j, at + p)
            ln = _u32(raw, p)
            p += 4
            if ln > n - p:
                bad("string[] element %d length %d runs past the value" % (j, ln), at + p - 4)
            s = _utf8(raw[p:p + ln])
            if isinstance(s, UnicodeDecodeError):
                bad("string[] element %d is not well-formed UTF-8 (%s)" % (j, s.reason),
                    at + p + s.start)
            items.append(s)
            p += ln
        if p != n:
            bad("string[]: %d bytes left after %d elements" % (n - p, count), at + p)
        return items, count
    # reserved / unknown type code: accepted, kept as opaque bytes
    return bytes(raw), n


def _parse_tensor_table(region, h, canonical):
    S = "tensor table"
    pos = h["tensor_table_offset"]
    end = pos + h["tensor_table_size"]
    file_size = h["file_size"]
    expected = h["data_offset"]
    count = h["tensor_count"]
    tensors = []
    names = set()
    canon = {}
    for i in range(count):
        e = pos
        # 23. fixed part and name
        if TENSOR_ENTRY_FIXED > end - pos:
            raise G2WError(S, "entry %d" % i, "the 56-byte fixed part runs past the end of the "
                           "table (%d bytes left)" % (end - pos), pos, "D.23")
        nlen, dtype, rank, crc = struct.unpack_from("<HBBI", region, pos)
        dims = list(struct.unpack_from("<4Q", region, pos + 8))
        offset, blen = struct.unpack_from("<QQ", region, pos + 40)
        pos += TENSOR_ENTRY_FIXED
        if nlen > end - pos:
            raise G2WError(S, "entry %d name" % i, "name_length %d runs past the end of the table "
                           "(%d bytes left)" % (nlen, end - pos), e, "D.23")
        raw_name = region[pos:pos + nlen]
        pos += nlen
        # 24.
        if not 1 <= nlen <= 255:
            raise G2WError(S, "entry %d name_length" % i, "is %d, must be 1..255" % nlen, e,
                           "D.24")
        # 25.
        name = _utf8(raw_name)
        if isinstance(name, UnicodeDecodeError):
            raise G2WError(S, "entry %d name" % i, "not well-formed UTF-8 (%s)" % name.reason,
                           e + TENSOR_ENTRY_FIXED + name.start, "D.25")
        if 0 in raw_name:
            raise G2WError(S, "entry %d name" % i, "contains a 00 byte",
                           e + TENSOR_ENTRY_FIXED + raw_name.index(0), "D.25")
        label = "tensor %r" % name
        # 26.
        if dtype not in DTYPES:
            raise G2WError(S, label + " dtype", "element type code %d is not implemented by this "
                           "reader (0 = f32, 1 = f16, 3 = q8_0, 4 = q4_0)" % dtype, e + 2, "D.26")
        # 27.
        if not 1 <= rank <= 4:
            raise G2WError(S, label + " rank", "is %d, must be 1..4" % rank, e + 3, "D.27")
        # 28.
        elements = 1
        for d in range(4):
            if d < rank:
                if dims[d] < 1:
                    raise G2WError(S, label + " dims[%d]" % d, "is 0, used dimensions must be >= 1",
                                   e + 8 + 8 * d, "D.28")
                elements *= dims[d]
                if elements > MAX_ELEMENTS:
                    raise G2WError(S, label + " dims[%d]" % d, "element count exceeds 2^60 - 1",
                                   e + 8 + 8 * d, "D.28")
            elif dims[d] != 0:
                raise G2WError(S, label + " dims[%d]" % d, "is %d, unused dimensions (rank %d) must "
                               "be 0" % (dims[d], rank), e + 8 + 8 * d, "D.28")
        # 29. the blob size of the element type: blocks x block bytes (spec 6.2, 6.4)
        tname, block, bbytes = DTYPES[dtype]
        if block == 1:
            if blen != elements * bbytes:
                raise G2WError(S, label + " byte_length", "is %d, must be %d elements x %d bytes "
                               "= %d" % (blen, elements, bbytes, elements * bbytes), e + 48, "D.29")
        else:
            cols = dims[rank - 1]
            if cols % block:
                raise G2WError(S, label + " dims[%d]" % (rank - 1), "cols = %d is not a multiple "
                               "of %d: the last dimension of a %s tensor must be" % (cols, block,
                                                                                    tname),
                               e + 8 + 8 * (rank - 1), "D.29")
            if h["version_minor"] < 1:
                raise G2WError(S, label + " dtype", "%s is an element type of format version 1.1, "
                               "the file says %d.%d" % (tname, h["version_major"],
                                                        h["version_minor"]), e + 2, "D.29")
            nb = elements // block
            if blen != nb * bbytes:
                raise G2WError(S, label + " byte_length", "is %d, must be %d blocks x %d bytes = "
                               "%d (%s: %d quant bytes + 2 scale bytes per block of %d)"
                               % (blen, nb, bbytes, nb * bbytes, tname, bbytes - 2, block),
                               e + 48, "D.29")
        # 30.
        if offset % ALIGNMENT:
            raise G2WError(S, label + " offset", "%d is not a multiple of 64" % offset, e + 40,
                           "D.30")
        # 31.
        if offset != expected:
            why = ("overlaps the previous blob or the tables" if offset < expected
                   else "leaves a hole")
            raise G2WError(S, label + " offset", "is %d, expected %d: %s" % (offset, expected, why),
                           e + 40, "D.31")
        # 32.
        blob_end = _add(offset, blen)
        if blob_end is None or blob_end > file_size:
            raise G2WError(S, label + " byte_length", "blob [%d, %d + %d) runs past the end of "
                           "the file (%d bytes)" % (offset, offset, blen, file_size), e + 48,
                           "D.32")
        # 33. unique names (bytes; optionally canonical equivalence, as the reference does)
        if raw_name in names:
            raise G2WError(S, label, "duplicate tensor name", e + TENSOR_ENTRY_FIXED, "D.33")
        names.add(raw_name)
        if canonical:
            nfd = unicodedata.normalize("NFD", name)
            if nfd in canon:
                raise G2WError(S, label, "duplicate tensor name: canonically equivalent to %r"
                               % canon[nfd], e + TENSOR_ENTRY_FIXED, "D.33")
            canon[nfd] = name
        # 34.
        if i == count - 1:
            expected = blob_end
        else:
            expected = _align64(blob_end)
            if expected is None:
                raise G2WError(S, label + " byte_length", "align64(end of blob) overflows",
                               e + 48, "D.34")
        tensors.append(Tensor(name, dtype, dims[:rank], elements, offset, blen, crc, e))
    # 35.
    if pos != end:
        raise G2WError(S, "tensor_table_size", "%d bytes left after the last of %d entries"
                       % (end - pos, count), pos, "D.35")
    # 36.
    if expected != file_size:
        raise G2WError(S, "file_size", "the last blob ends at %d but the file has %d bytes"
                       % (expected, file_size), expected, "D.36")
    return tensors


def _check_scales(f, tensors, chunk_blocks=1 << 19):
    """Spec 9.1 step 37 (version 1.1): every scale of every q8_0 / q4_0 tensor is finite. Reads
    only the scales regions (2 bytes per block), after the table has placed every blob inside
    the file."""
    for t in tensors:
        if not t.quantized:
            continue
        start = t.scales_offset
        nb = t.blocks
        f.seek(start)
        done = 0
        while done < nb:
            n = min(chunk_blocks, nb - done)
            chunk = f.read(2 * n)
            if len(chunk) != 2 * n:
                raise G2WError("data", "tensor %r scales" % t.name, "file shrank while reading the "
                               "scales region", start + 2 * done + len(chunk), "E.37")
            j = chunk[1::2].translate(_NONFINITE_HIGH).find(1)
            if j >= 0:
                b = done + j
                h = chunk[2 * j] | chunk[2 * j + 1] << 8
                what = "NaN" if h & 0x03FF else ("-inf" if h & 0x8000 else "+inf")
                raise G2WError("data", "tensor %r block %d scale" % (t.name, b),
                               "is %s (binary16 0x%04x): every %s scale must be finite (block %d "
                               "of %d)" % (what, h, t.dtype, b, nb), start + 2 * b, "E.37")
            done += n


# --------------------------------------------------------------------------------------------
# JSON in the shape printed by `g2w-inspect --json`

HEADER_JSON_FIELDS = (
    "version_major", "version_minor", "byte_order", "alignment", "header_size",
    "metadata_offset", "metadata_size", "metadata_count", "tensor_table_offset",
    "tensor_table_size", "tensor_count", "data_offset", "data_size", "header_crc32c", "flags",
)


def _json_float(x):
    if not math.isfinite(x):
        return None                     # JSON has no NaN/Infinity; g2w-inspect prints null
    if x == int(x) and abs(x) < 2.0 ** 53:
        return int(x)                   # integral values print as integers (3, not 3.0)
    return x


def to_json_object(g, path=None, verified=None, verify_error=None):
    h = g.header
    header = {}
    for k in HEADER_JSON_FIELDS:
        header[k] = "little" if k == "byte_order" else h[k]
    meta = []
    for m in g.metadata:
        o = {"key": m.key, "type": m.type_name, "type_code": m.type_code}
        if m.type_code in (1, 2, 4, 5):
            o["value"] = m.value
        elif m.type_code == 3:
            o["value"] = _json_float(m.value)
        else:                           # bytes, string[], unknown: a count
            o["count"] = m.count
        meta.append(o)
    tensors = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "offset": t.offset,
                "byte_length": t.byte_length, "crc32c": t.crc32c} for t in g.tensors]
    params = sum(t.elements for t in g.tensors)
    tbytes = sum(t.byte_length for t in g.tensors)
    obj = {
        "file": g.path if path is None else path,
        "file_size": g.file_size,
        "header": header,
        "metadata": meta,
        "tensors": tensors,
        "totals": {"tensors": len(g.tensors), "parameters": params, "tensor_bytes": tbytes,
                   "bits_per_weight": _json_float(tbytes * 8 / params) if params else 0},
    }
    if verified is not None:
        obj["verified"] = verified
        if verify_error is not None:
            obj["verify_error"] = verify_error
    return obj


def format_json(obj):
    """The layout of g2w-inspect: one line per top-level key, one line per tensor."""
    def d(x):
        return json.dumps(x, ensure_ascii=False)
    lines = ["{"]
    parts = []
    for k, v in obj.items():
        if k == "tensors":
            inner = ",\n".join("    " + d(t) for t in v) if v else "    "
            parts.append('  "tensors": [\n%s\n  ]' % inner)
        else:
            parts.append("  %s: %s" % (d(k), d(v)))
    # g2w-inspect puts "verify_error" on the same line as "verified"
    text = ",\n".join(parts)
    text = text.replace(',\n  "verify_error"', ', "verify_error"')
    lines.append(text)
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Training checkpoints (spec section 14)

TRAIN_KEYS = {
    "train.format_version": 1, "train.step": 1, "train.tokens_seen": 1, "train.adamw_step": 1,
    "train.rng_state": 1, "train.data_state": 5, "train.hyperparameters": 5, "train.history": 5,
}


def training_state(g):
    """The training state of a checkpoint (spec section 14) as a dict, or None if the file has no
    `train.format_version` key. Raises G2WError if the state is incomplete or inconsistent: a
    missing or mistyped key, JSON that does not parse, or a missing, misshapen or non-f32 moment."""
    keys = {m.key: m for m in g.metadata}
    if "train.format_version" not in keys:
        return None
    out = {}
    for k, code in TRAIN_KEYS.items():
        m = keys.get(k)
        if m is None:
            raise G2WError("metadata", k, "required by spec section 14, missing")
        if m.type_code != code:
            raise G2WError("metadata", k, "expected %s, found %s" % (TYPE_NAMES[code], m.type_name))
        out[k[len("train."):]] = m.value
    if out["format_version"] != 1:
        raise G2WError("metadata", "train.format_version", "version %d is not implemented" % out["format_version"])
    for k in ("data_state", "hyperparameters", "history"):
        try:
            out[k] = json.loads(out[k])
        except ValueError as e:
            raise G2WError("metadata", "train." + k, "not JSON: %s" % e)
    best = keys.get("train.best_val_loss")
    if best is not None:
        if best.type_code != 3:
            raise G2WError("metadata", "train.best_val_loss", "expected f64, found %s" % best.type_name)
        out["best_val_loss"] = best.value
    names = {t.name: t for t in g.tensors}
    params = [t for t in g.tensors if not t.name.startswith("train.")]
    for t in params:
        for prefix in ("train.adamw_m.", "train.adamw_v."):
            m = names.get(prefix + t.name)
            if m is None:
                raise G2WError("tensor table", prefix + t.name, "required by spec section 14, missing")
            if m.shape != t.shape or m.dtype != "f32":
                raise G2WError("tensor table", m.name, "expected f32 %s, found %s %s" % (t.shape, m.dtype, m.shape))
    out["parameter_tensors"] = len(params)
    return out


# --------------------------------------------------------------------------------------------
# Human-readable listing

def _format_text(g, path, verified):
    h = g.header
    out = []
    out.append("file:      %s (%d bytes)" % (path, g.file_size))
    out.append("format:    g2w %d.%d, little-endian, alignment %d"
               % (h["version_major"], h["version_minor"], h["alignment"]))
    out.append("sections:  header 0+%d, metadata %d+%d, tensor table %d+%d, data %d+%d"
               % (h["header_size"], h["metadata_offset"], h["metadata_size"],
                  h["tensor_table_offset"], h["tensor_table_size"], h["data_offset"],
                  h["data_size"]))
    out.append("header region CRC-32C: 0x%08x" % h["header_crc32c"])
    out.append("")
    out.append("metadata (%d entries):" % len(g.metadata))
    kw = max([len(m.key) for m in g.metadata] + [3])
    for m in g.metadata:
        if m.type_code == 5:
            v = json.dumps(m.value, ensure_ascii=False)
            if len(v) > 80:
                v = v[:77] + "..."
        elif m.type_code == 7:
            shown = ", ".join(json.dumps(s, ensure_ascii=False) for s in m.value[:4])
            v = "[%s%s]" % (shown, ", ... (%d strings)" % m.count if m.count > 4 else "")
        elif m.type_code == 4:
            v = "true" if m.value else "false"
        elif m.type_code in (1, 2, 3):
            v = repr(m.value)
        else:
            v = "(%d bytes)" % m.count
        out.append("  %-*s  %-8s  %s" % (kw, m.key, m.type_name, v))
    out.append("")
    out.append("tensors (%d):" % len(g.tensors))
    nw = max([len(t.name) for t in g.tensors] + [4])
    out.append("  %-*s  dtype  %-20s  %12s  %12s  crc32c" % (nw, "name", "shape", "offset", "bytes"))
    for t in g.tensors:
        out.append("  %-*s  %-5s  %-20s  %12d  %12d  %08x" % (
            nw, t.name, t.dtype, "x".join(map(str, t.shape)), t.offset, t.byte_length, t.crc32c))
    params = sum(t.elements for t in g.tensors)
    tbytes = sum(t.byte_length for t in g.tensors)
    out.append("")
    out.append("totals: %d tensors, %d parameters, %d tensor bytes, %.2f bits per weight"
               % (len(g.tensors), params, tbytes, tbytes * 8 / params if params else 0.0))
    if verified:
        out.append("verify: all %d tensor checksums match (CRC-32C), padding is zero"
                   % len(g.tensors))
    try:
        state = training_state(g)
    except G2WError as e:
        out.append("training checkpoint: invalid state: %s" % e)
        state = None
    if state is not None:
        out.append("training checkpoint: step %d, %d tokens seen, AdamW step %d, %d parameter tensors "
                   "with both moments, %d history entries" % (state["step"], state["tokens_seen"], state["adamw_step"],
                                                              state["parameter_tensors"], len(state["history"])))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Command line

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="g2w_reader.py",
        description="Independent reader of .g2w files (from spec/g2w.md): validate the header, "
                    "metadata and tensor table; optionally verify every blob's CRC-32C.")
    ap.add_argument("file", metavar="FILE.g2w")
    ap.add_argument("--verify", action="store_true",
                    help="recompute every tensor's CRC-32C and check the padding between blobs")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object, in the format of g2w-inspect --json")
    args = ap.parse_args(argv)
    prog = "g2w_reader.py"
    try:
        g = read_g2w(args.file)
    except G2WError as e:
        print("%s: error: %s: invalid .g2w file: %s" % (prog, args.file, e), file=sys.stderr)
        return 1
    except OSError as e:
        print("%s: error: %s: %s" % (prog, args.file, e.strerror or e), file=sys.stderr)
        return 1
    verified, verify_error = None, None
    if args.verify:
        try:
            verified = g.verify()
        except G2WError as e:
            verified, verify_error = False, str(e)
        except OSError as e:
            verified, verify_error = False, str(e)
    out = sys.stdout.buffer
    if args.json:
        out.write(format_json(to_json_object(g, args.file, verified, verify_error)).encode("utf-8"))
    else:
        out.write(_format_text(g, args.file, verified).encode("utf-8"))
    out.flush()
    if verify_error is not None:
        print("%s: error: verify failed: %s" % (prog, verify_error), file=sys.stderr)
        return 1
    return 0


_self_test()

if __name__ == "__main__":
    sys.exit(main())
