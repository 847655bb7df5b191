#!/usr/bin/env python3
"""Build the reference ids the G2WTokenizer tests compare against, with tiktoken, offline.

Writes Tests/Fixtures/tokenizer/:
  manifest.json            corpora (byte length, SHA-256, token count, ids file), pathological
                           1 MB strings (recipe, token count, SHA-256 of the ids), versions
  tinyshakespeare.ids.u16  tiktoken ids of ../shared/corpus/tinyshakespeare.txt, little-endian uint16
  wiki.test.ids.u16        tiktoken ids of ../shared/corpus/wiki.test.raw, little-endian uint16
  edge_cases.json          hand-written and seeded random strings with their ids, plus special-token cases

The encoding is built from ../shared/gpt2-tokenizer (encoder.json + vocab.bpe) with tiktoken's own
loader and pattern, and checked to be identical to tiktoken.get_encoding("gpt2") (fed the same files
through tiktoken's cache, network disabled) and to give the same ids with GPT-2's original regex.

Usage: python3 tools/tokenizer_reference.py [--shared ../shared] [--out Tests/Fixtures/tokenizer]
"""
import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tempfile

import tiktoken
import tiktoken.load
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext import openai_public

GPT2_ORIGINAL_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
SEED = 20240604
HERE = os.path.dirname(os.path.abspath(__file__))


def build_encoding(tok_dir, pat=openai_public.r50k_pat_str, name="gpt2"):
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=os.path.join(tok_dir, "vocab.bpe"),
        encoder_json_file=os.path.join(tok_dir, "encoder.json"),
    )
    return tiktoken.Encoding(name=name, pat_str=pat, mergeable_ranks=ranks,
                             special_tokens={ENDOFTEXT: 50256}, explicit_n_vocab=50257)


def official_gpt2(tok_dir):
    """tiktoken.get_encoding("gpt2"), with its two files served from tok_dir through tiktoken's cache."""
    spec_src = openai_public.gpt2
    urls = {
        "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    }
    cache = tempfile.mkdtemp(prefix="tiktoken-cache-")
    for fname, url in urls.items():
        with open(os.path.join(tok_dir, fname), "rb") as src, \
                open(os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()), "wb") as dst:
            dst.write(src.read())
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache

    def no_network(path):
        raise RuntimeError(f"network access attempted: {path}")
    real_read_file = tiktoken.load.read_file
    tiktoken.load.read_file = no_network
    try:
        spec = spec_src()  # raises if the cached files do not have the pinned SHA-256
    finally:
        tiktoken.load.read_file = real_read_file
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old
    return tiktoken.Encoding(**spec), spec


# ---------------------------------------------------------------------------------------------
# Deterministic generators shared with the Swift tests (splitmix64).

MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def random_chars(seed, alphabet, count):
    rng = SplitMix64(seed)
    n = len(alphabet)
    return "".join(alphabet[rng.next() % n] for _ in range(count))


PUNCT = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"
CJK = "".join(chr(c) for c in range(0x4E00, 0xA000))
# name -> (recipe understood by the Swift test, text)
PATHOLOGICAL = {
    "a-1M": ({"kind": "repeat", "char": "a", "count": 1_000_000}, "a" * 1_000_000),
    "letters-1M": ({"kind": "random", "seed": 1, "alphabet": "abcdefghijklmnopqrstuvwxyz", "count": 1_000_000},
                   random_chars(1, "abcdefghijklmnopqrstuvwxyz", 1_000_000)),
    "digits-1M": ({"kind": "random", "seed": 2, "alphabet": "0123456789", "count": 1_000_000},
                  random_chars(2, "0123456789", 1_000_000)),
    "spaces-1M": ({"kind": "repeat", "char": " ", "count": 1_000_000}, " " * 1_000_000),
    "punct-1M": ({"kind": "random", "seed": 3, "alphabet": PUNCT, "count": 1_000_000},
                 random_chars(3, PUNCT, 1_000_000)),
    "cjk-1M": ({"kind": "random", "seed": 4, "alphabet_range": [0x4E00, 0x9FFF], "count": 333_334},
               random_chars(4, CJK, 333_334)),
}


# ---------------------------------------------------------------------------------------------
# Edge cases.

WHITESPACE = ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x85", "\xa0", "\u1680"] + \
    [chr(c) for c in range(0x2000, 0x200B)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NOT_WHITESPACE_LOOKALIKES = ["\x1c", "\x1d", "\x1e", "\x1f", "\u180e", "\u200b", "\u200c", "\u200d",
                             "\u2060", "\ufeff", "\u00ad", "\u034f", "\u115f", "\u3164", "\uffa0"]
# Characters assigned in recent Unicode versions (Swift 6.3 knows them as letters/numbers; the
# regex tables behind tiktoken may not): the tokenizer must follow tiktoken.
RECENT = ["\u088f", "\u0c5c", "\u0cdc", "\ua7ce", "\ua7cf", "\ua7d2", "\ua7d4", "\ua7f1",
          "\U00010940", "\U00010959", "\U00010ec5", "\U00011db0", "\U00011dd9", "\U0001e5d0",
          "\U0001e5f1", "\U0001ccf0", "\U0001ccf9", "\U00016d40", "\U00016d70", "\U000105c0",
          "\U0001f8b0", "\U0001fbf0", "\U00031350", "\U000323af", "\U000323b0", "\U0002ebf0"]


def hand_cases():
    c = []
    # whitespace runs
    for ws in [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \t ", "\t \n \r"]:
        for tmpl in ["{w}", "{w}a", "a{w}", "a{w}b", "{w}!", "!{w}", "a{w}!", "{w}1", "1{w}", "{w}{w}a{w}{w}",
                     "{w}'s", "x{w}'s", "{w}\u00e9", "{w}\u4e2d", "{w}\U0001F600"]:
            c.append(tmpl.format(w=ws))
    c += [" " * n for n in range(1, 40)] + ["a" + " " * n + "b" for n in range(1, 20)]
    c += ["\n" * n for n in range(1, 20)] + ["\t" * n + "x" for n in range(1, 12)]
    c += ["Hello world", "Hello  world", "Hello   world!", "  leading", "trailing  ", "trailing \n",
          "line1\nline2\n", "line1\r\nline2\r\n", "para\n\npara", "a\n\n\n b", "a \n\n b", "x\t\ty", "x \t y",
          " \u00a0a", "\u00a0 a", "a\u00a0\u00a0b", "a\u3000b", "\u3000\u3000x", "a\u2028b", "a\u2029\u2029b",
          "end with nbsp\u00a0", "\u0085a\u0085", " \u0085 a"]
    # contractions, all cases and lookalikes
    for w in ["it's", "It's", "IT'S", "it'S", "we're", "WE'RE", "We'Re", "you've", "YOU'VE", "I'm", "I'M",
              "we'll", "WE'LL", "We'Ll", "he'd", "HE'D", "don't", "DON'T", "'s", "'S", "'s's", "''s", "'''",
              "'ss", "'sa", "'re'", "'ll'll", "'d'd'd", "'", "''", "x'", "x''y", " 's", "  's", "!'s", "1's",
              "\u00e9'\u00e9", "rock'n'roll", "'tis", "'twas", "o'clock", "it\u2019s", "IT\u2019S", "\u2018quoted\u2019",
              "it\u02bcs", "it\uff07s", "can't've", "y'all'd've", "'m'm", "'v", "'ve", "'r", "'l", "'L", "'LL"]:
        c.append(w)
        c.append(" " + w)
        c.append(w + "!")
    # numbers in many scripts
    c += ["0", "123", "1234567890", "3.14159", "1,000,000", "-42", "+7", "1e10", "0x1F", "2024-06-04",
          "\u0660\u0661\u0662\u0663", "\u06f1\u06f2\u06f3", "\u0966\u0967\u0968", "\u09e6\u09e7", "\u0e51\u0e52\u0e53",
          "\uff11\uff12\uff13", "\u2160\u2161\u2162\u216b", "\u00b2\u00b3\u00b9", "\u00bd\u00bc\u00be", "\u2460\u2461\u2473",
          "\u2070\u2074\u2075", "\u2080\u2081", "\U0001d7ce\U0001d7cf", "\U0001f100\U0001f101", "\u3007\u4e00\u4e8c",
          "\U00010107\U00010108", "x\u00b2+y\u00b2", "12abc", "abc12", "1\u00bd", " 1 2 3", "  42", "1 000 000",
          "\u0661\u0662a", "a\u0967", "\u2155\u2156"]
    # scripts
    c += ["caf\u00e9", "na\u00efve", "\u00c5ngstr\u00f6m", "stra\u00dfe", "\u0130stanbul", "\u0131i",
          "\u0391\u03b8\u03ae\u03bd\u03b1", "\u03c3\u03bf\u03c6\u03af\u03b1 \u03ba\u03b1\u03b9", "\u041c\u043e\u0441\u043a\u0432\u0430",
          "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u4e2d\u6587\u5b57\u7b26", "\u6f22\u5b57\u304b\u306a\u30ab\u30ca",
          "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8", "\u1100\u1161\u11a8",
          "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629\u064b",
          "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u05b0\u05e9\u05b8\u05dc\u05d5\u05b9\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947",
          "\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", "\u1780\u17d2\u1798\u17c2\u179a",
          "\u10e5\u10d0\u10e0\u10d7\u10e3\u10da\u10d8", "\u0531\u0580\u0574\u0565\u0576", "\u12a0\u121b\u122d\u129b", "\u13e3\u13b3\u13a9",
          "\u1403\u14c4\u1483", "\u16a0\u16a2\u16a6", "\U00010330\U00010331", "\U0001d400\U0001d401\U0001d41a", "\U0001d538\U0001d539",
          "\u210e\u2113", "\u2102\u211d\u2124"]
    # combining marks and normalization forms
    c += ["e\u0301", "e\u0301\u0301\u0301", "\u0301", " \u0301", "a\u0300b", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA",
          "n\u0303", "\u00f1", "\u1e9b\u0323", "\u0915\u093f", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e48", "\u0332x\u0332"]
    # emoji
    c += ["\U0001F600", "\U0001F600\U0001F600", "hi \U0001F44B", "\U0001F44B\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
          "\U0001F3F3\uFE0F\u200D\U0001F308", "\U0001F1FA\U0001F1F8", "\U0001F1EF\U0001F1F5\U0001F1EB\U0001F1F7", "#\uFE0F\u20E3", "1\uFE0F\u20E3",
          "\u2764\uFE0F", "\u2764", "\U0001F9D1\U0001F3FF\u200D\U0001F4BB", "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
          "a\U0001F600b", "\U0001F600 a", " \U0001F600", "\U0001F600!", "\U0001F600'", "\u263A\uFE0E", "\u00A9\u00AE\u2122"]
    # zero-width, BOM, controls
    c += ["\ufeff", "\ufeffHello", "a\ufeffb", "a\u200bb", "a\u200cb", "a\u200db", "a\u2060b", " \u200b", "\u200b ",
          "\x00", "a\x00b", "\x01\x02\x03", "\x07\x08", "\x1b[31mred\x1b[0m", "\x7f", "a\x7fb", "\x1c\x1d\x1e\x1f",
          " \x1c", "\x1c ", "a\x1cb", "\x0b\x0c", "a\x0bb", "\x80\x81\x9f", "a\u00adb", "\ufffd", "\ufffe\uffff",
          "\ue000\uf8ff", "\U000F0000\U0010FFFD", "\U0010FFFF", "\U000E0001", "\u2066a\u2069", "\u202ea\u202c"]
    c += [w + "x" for w in WHITESPACE] + ["x" + w for w in WHITESPACE] + [" " + w + "x" for w in WHITESPACE] + \
         [w + w + "x" for w in WHITESPACE] + [w + " x" for w in WHITESPACE] + [w + "!" for w in WHITESPACE]
    c += [w + "x" for w in NOT_WHITESPACE_LOOKALIKES] + ["x" + w + "x" for w in NOT_WHITESPACE_LOOKALIKES] + \
         [" " + w for w in NOT_WHITESPACE_LOOKALIKES]
    c += RECENT + ["a" + r + "a" for r in RECENT] + [" " + r for r in RECENT] + ["1" + r for r in RECENT]
    # punctuation
    c += ["!!!", "...", "?!", "\"quoted\"", "(parens)", "[brackets]", "{braces}", "a.b.c", "e.g.", "--", "---",
          "\u2014", "\u2013", "a\u2014b", "\u00ab\u00bb", "\u201cq\u201d", "\u2026", "@user", "#tag", "$100", "100%",
          "a+b=c", "x^2", "C++", "C#", "f(x)", "<html>", "</div>", "http://example.com/a?b=c&d=e", "user@example.com",
          "\\n", "\\\\", "/* */", "// comment", "\u00bfQu\u00e9?", "\u00a1Hola!", "\u3002\u3001", "\uff01\uff1f", "\u060c\u061f"]
    # special token text
    c += [ENDOFTEXT, "a" + ENDOFTEXT + "b", " " + ENDOFTEXT + " ", ENDOFTEXT * 3, "<|endoftext", "endoftext|>",
          "<|ENDOFTEXT|>", "<|endoftext|>\n<|endoftext|>", "<|startoftext|>", "<|im_start|>"]
    # long words and runs
    c += ["a" * n for n in [47, 48, 49, 50, 64, 100, 257, 1000, 4096]]
    c += ["ab" * 500, "abc" * 400, "\U0001F600" * 300, "\u4e2d" * 500, "1" * 1000, "!" * 1000, " " * 1000, "\n" * 500,
          "\t" * 300, "'" * 200, "'s" * 200, "\u00e9" * 500, "e\u0301" * 300, " a" * 500, "a " * 500]
    c += ["Supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
          "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
          "Rindfleischetikettierungs\u00fcberwachungsaufgaben\u00fcbertragungsgesetz",
          "".join(chr(0x61 + (i * 7) % 26) for i in range(3000)),
          "".join(chr(0x3b1 + (i * 5) % 25) for i in range(2000)),
          "".join(chr(0x430 + (i * 11) % 32) for i in range(2000)),
          "".join(chr(0xAC00 + (i * 37) % 11172) for i in range(1500))]
    return c


def random_cases(rng, count):
    pools = [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        list("0123456789"),
        list(PUNCT + "'"),
        ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "\u2019s"],
        WHITESPACE, WHITESPACE, [" "] * 4, ["\n", "\r\n", "\n\n"],
        NOT_WHITESPACE_LOOKALIKES,
        [chr(c) for c in range(0xC0, 0x250)],
        [chr(c) for c in range(0x370, 0x400)],
        [chr(c) for c in range(0x400, 0x530)],
        [chr(c) for c in range(0x590, 0x600)],
        [chr(c) for c in range(0x600, 0x700)],
        [chr(c) for c in range(0x900, 0x980)],
        [chr(c) for c in range(0xE00, 0xE80)],
        [chr(c) for c in range(0x4E00, 0x4F00)],
        [chr(c) for c in range(0x3040, 0x3100)],
        [chr(c) for c in range(0xAC00, 0xAD00)],
        [chr(c) for c in range(0x300, 0x370)],  # combining marks
        [chr(c) for c in range(0x1F300, 0x1F650)],
        ["\U0001F3FB", "\U0001F3FF", "\u200d", "\ufe0f", "\u20e3", "\U0001F1FA", "\U0001F1F8"],
        ["\u0660", "\u06f5", "\u0966", "\uff15", "\u2163", "\u00b2", "\u00bd", "\u2460", "\U0001d7d8", "\u3007"],
        [chr(c) for c in range(0x1D400, 0x1D500)],
        [chr(c) for c in range(0x2000, 0x2070)],
        [chr(c) for c in range(0x0, 0x20)] + ["\x7f", "\x85", "\x9f"],
        RECENT,
        [ENDOFTEXT, "<|", "|>"],
    ]
    out = []
    for k in range(count):
        n = rng.randint(1, 16) if k % 50 else rng.randint(40, 120)
        s = []
        for _ in range(n):
            r = rng.random()
            if r < 0.04:
                cp = rng.randrange(0x80, 0x110000)
                if 0xD800 <= cp <= 0xDFFF:
                    cp = 0xE000
                s.append(chr(cp))
            elif r < 0.08 and s:
                s.append(s[-1][-1] * rng.randint(2, 12))  # runs
            else:
                s.append(rng.choice(rng.choice(pools)))
        out.append("".join(s))
    return out


def texts_digest(texts):
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(struct.pack("<I", len(b)))
        h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "Tests", "Fixtures", "tokenizer"))
    args = ap.parse_args()
    tok_dir = os.path.join(args.shared, "gpt2-tokenizer")
    corpus_dir = os.path.join(args.shared, "corpus")
    os.makedirs(args.out, exist_ok=True)

    enc = build_encoding(tok_dir)
    official, spec = official_gpt2(tok_dir)
    assert spec["pat_str"] == enc._pat_str, "pattern differs from tiktoken's gpt2"
    assert spec["mergeable_ranks"] == enc._mergeable_ranks, "ranks differ from tiktoken's gpt2"
    assert spec["special_tokens"] == enc._special_tokens, "special tokens differ from tiktoken's gpt2"
    assert official.n_vocab == enc.n_vocab == 50257
    original = build_encoding(tok_dir, pat=GPT2_ORIGINAL_PATTERN, name="gpt2-original-regex")

    def ids_of(text):
        ids = enc.encode_ordinary(text)
        assert ids == official.encode_ordinary(text), "differs from tiktoken.get_encoding('gpt2')"
        assert ids == original.encode_ordinary(text), "differs with GPT-2's original regex"
        return ids

    manifest = {"tiktoken": tiktoken.__version__, "encoding": "gpt2", "pattern": enc._pat_str,
                "corpora": {}, "pathological": {}}
    for name, fname in [("tinyshakespeare", "tinyshakespeare.txt"), ("wiki.test", "wiki.test.raw")]:
        with open(os.path.join(corpus_dir, fname), "rb") as f:
            data = f.read()
        ids = ids_of(data.decode("utf-8"))
        assert max(ids) < 65536
        ids_file = f"{name}.ids.u16"
        with open(os.path.join(args.out, ids_file), "wb") as f:
            f.write(struct.pack(f"<{len(ids)}H", *ids))
        manifest["corpora"][name] = {"source": f"../shared/corpus/{fname}", "bytes": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest(), "tokens": len(ids),
                                     "ids": ids_file}
        print(f"{name}: {len(data)} bytes -> {len(ids)} tokens")

    for name, (recipe, text) in PATHOLOGICAL.items():
        ids = enc.encode_ordinary(text)
        manifest["pathological"][name] = dict(recipe, utf8_bytes=len(text.encode("utf-8")), tokens=len(ids),
                                              ids_sha256=hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest())
        print(f"{name}: {len(ids)} tokens")

    rng = random.Random(SEED)
    texts = hand_cases() + random_cases(rng, 3000)
    cases = [[t, ids_of(t)] for t in texts]
    for t, ids in cases:
        assert enc.decode_bytes(ids) == t.encode("utf-8")
    special_texts = [ENDOFTEXT, "Hello" + ENDOFTEXT + "World", "a " + ENDOFTEXT + " b", ENDOFTEXT * 3,
                     "  " + ENDOFTEXT + "\n\n", "x\n" + ENDOFTEXT, "<|endoftext" + ENDOFTEXT + "|>",
                     "<<|endoftext|>>", "text with no special token", ""]
    special = [[t, enc.encode(t, allowed_special="all")] for t in special_texts]
    assert special[0][1] == [50256]
    edge = {"tiktoken": tiktoken.__version__, "seed": SEED, "count": len(cases),
            "texts_sha256": texts_digest(texts), "cases": cases, "special_allowed": special}
    with open(os.path.join(args.out, "edge_cases.json"), "w", encoding="utf-8") as f:
        json.dump(edge, f, ensure_ascii=False, separators=(",", ":"))
    manifest["edge_cases"] = {"file": "edge_cases.json", "count": len(cases), "seed": SEED}
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"edge cases: {len(cases)}; special: {len(special)}")
    total = sum(os.path.getsize(os.path.join(args.out, n)) for n in os.listdir(args.out))
    print(f"fixtures: {total} bytes in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
