#!/usr/bin/env python3
"""Generate Sources/CGPT2Vocabulary/gpt2_vocabulary.c: OpenAI's GPT-2 BPE merges as C data.

The tools carry the GPT-2 tokenizer inside the binary (no resource bundles, no extra files), for
training from scratch and for tokenizing without a model. Only the merges are embedded, because
GPT-2's vocabulary follows from them exactly (this script checks it against encoder.json):

  ids 0..255      the 256 single bytes, as the characters of `bytes_to_unicode()` in its order
                  ('!'..'~', '¡'..'¬', '®'..'ÿ', then the other 68 bytes as U+0100 upwards)
  ids 256..50255  the result of merge i (its two tokens concatenated) is id 256 + i
  id 50256        "<|endoftext|>"

`GPT2Tokenizer.gpt2()` (Sources/G2WTokenizer/BuiltInGPT2.swift) rebuilds the tokenizer from it.

Inputs: OpenAI's encoder.json and vocab.bpe (identical to Hugging Face gpt2's vocab.json and
merges.txt), which must have these SHA-256 digests:

  encoder.json  196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  vocab.bpe     1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

Output: the merge lines exactly as in vocab.bpe after its "#version: 0.2" header, each ending in
"\\n" (50,000 lines, 456,304 bytes of UTF-8), as an array of C string literals ("pieces"). Each
piece holds whole lines and fewer than 4,000 bytes, on one source line of under 4,000 characters,
within the C standard's minimum translation limits (4,095) and clear of -Woverlength-strings.
The line feed is written "\\n"; other bytes outside printable ASCII, and '"', '\\\\' and '?' (no
trigraphs), are 3-digit octal escapes, so no escape can swallow the character after it. The output
(about 725 KB of C) depends only on the inputs.

Usage: python3 tools/make_gpt2_vocabulary.py [encoder.json vocab.bpe [output.c]]
  defaults: Tests/Fixtures/tiny-f32/vocab.json, Tests/Fixtures/tiny-f32/merges.txt,
            Sources/CGPT2Vocabulary/gpt2_vocabulary.c (paths relative to the repository)
"""
import hashlib
import json
import os
import sys

ENCODER_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
HEADER = b"#version: 0.2\n"
MERGE_COUNT = 50000
PIECE_LIMIT = 4000  # source characters per piece, quotes and comma included


def bytes_to_unicode():
    """OpenAI's encoder.py: byte -> character, in the order that gives ids 0..255."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def check_digest(name, data, expected):
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        sys.exit(f"{name}: SHA-256 {actual}, expected {expected} (not OpenAI's GPT-2 file)")


def c_escape(data):
    out = []
    for b in data:
        if 0x20 <= b < 0x7F and b not in b'"\\?':
            out.append(chr(b))
        elif b == 0x0A:
            out.append("\\n")
        else:
            out.append("\\%03o" % b)
    return "".join(out)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = sys.argv[1:]
    if len(args) not in (0, 2, 3):
        sys.exit(__doc__)
    encoder_path = args[0] if args else os.path.join(root, "Tests/Fixtures/tiny-f32/vocab.json")
    merges_path = args[1] if args else os.path.join(root, "Tests/Fixtures/tiny-f32/merges.txt")
    output_path = args[2] if len(args) == 3 else os.path.join(root, "Sources/CGPT2Vocabulary/gpt2_vocabulary.c")

    encoder_bytes = open(encoder_path, "rb").read()
    merges_bytes = open(merges_path, "rb").read()
    check_digest(encoder_path, encoder_bytes, ENCODER_SHA256)
    check_digest(merges_path, merges_bytes, MERGES_SHA256)

    # The embedded text: vocab.bpe without its header line.
    if not merges_bytes.startswith(HEADER):
        sys.exit(f"{merges_path}: does not start with {HEADER!r}")
    text = merges_bytes[len(HEADER):]
    lines = text.decode("utf-8").split("\n")
    if lines[-1] != "":
        sys.exit(f"{merges_path}: does not end with a newline")
    lines = lines[:-1]
    if len(lines) != MERGE_COUNT or not all(line.count(" ") == 1 for line in lines):
        sys.exit(f"{merges_path}: expected {MERGE_COUNT} lines 'left right'")

    # The fact the embedding relies on: the vocabulary follows from the merges.
    derived = list(bytes_to_unicode().values()) + [line.replace(" ", "") for line in lines] + ["<|endoftext|>"]
    encoder = json.loads(encoder_bytes.decode("utf-8"))
    in_id_order = sorted(encoder, key=encoder.get)
    if sorted(encoder.values()) != list(range(len(encoder))) or in_id_order != derived:
        sys.exit(f"{encoder_path}: the vocabulary does not follow from the merges")

    # Pieces of whole lines.
    pieces = []
    current = ""
    for line in lines:
        escaped = c_escape((line + "\n").encode("utf-8"))
        if current and len(current) + len(escaped) + 3 >= PIECE_LIMIT:
            pieces.append(current)
            current = ""
        current += escaped
    pieces.append(current)
    assert b"".join(bytes(p.encode("ascii").decode("unicode_escape"), "latin-1") for p in pieces) == text

    out = []
    out.append("// GENERATED by tools/make_gpt2_vocabulary.py; do not edit.\n")
    out.append("//\n")
    out.append("// OpenAI's GPT-2 BPE merges: vocab.bpe (= Hugging Face gpt2 merges.txt, SHA-256\n")
    out.append(f"// {MERGES_SHA256})\n")
    out.append(f"// without its \"#version: 0.2\" line: {len(lines)} lines \"left right\\n\", {len(text)} bytes of UTF-8,\n")
    out.append(f"// in {len(pieces)} pieces of whole lines. The vocabulary follows from them (see cgpt2_vocabulary.h),\n")
    out.append("// as checked against encoder.json (SHA-256\n")
    out.append(f"// {ENCODER_SHA256}).\n")
    out.append("#include \"cgpt2_vocabulary.h\"\n\n")
    out.append(f"#define PIECE_COUNT {len(pieces)}\n\n")
    out.append("static const char *const pieces[PIECE_COUNT] = {\n")
    for p in pieces:
        out.append(f"\"{p}\",\n")
    out.append("};\n\n")
    out.append("// Byte length of each piece.\n")
    out.append("static const unsigned short piece_lengths[PIECE_COUNT] = {\n")
    lengths = [len(bytes(p.encode("ascii").decode("unicode_escape"), "latin-1")) for p in pieces]
    for k in range(0, len(lengths), 16):
        out.append("    " + ", ".join(str(n) for n in lengths[k:k + 16]) + ",\n")
    out.append("};\n\n")
    out.append("size_t g2w_gpt2_merges_piece_count(void) { return PIECE_COUNT; }\n\n")
    out.append("const char *g2w_gpt2_merges_piece(size_t index, size_t *length) {\n")
    out.append("    if (index >= PIECE_COUNT) {\n")
    out.append("        *length = 0;\n")
    out.append("        return 0;\n")
    out.append("    }\n")
    out.append("    *length = piece_lengths[index];\n")
    out.append("    return pieces[index];\n")
    out.append("}\n\n")
    out.append(f"size_t g2w_gpt2_merges_length(void) {{ return {len(text)}; }}\n")
    source = "".join(out)
    assert max(len(l) for l in source.split("\n")) < PIECE_LIMIT
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    with open(output_path, "w", encoding="ascii", newline="\n") as f:
        f.write(source)
    print(f"{output_path}: {len(lines)} merges, {len(text)} bytes in {len(pieces)} pieces, "
          f"{len(source)} bytes of C")


if __name__ == "__main__":
    main()
