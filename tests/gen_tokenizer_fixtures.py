#!/usr/bin/env python3
"""Expected ids from Hugging Face `tokenizers` for the C tokenizer's tests.

Subcommands:
  tiny      train the tiny tokenizer (tests/fixtures/tokenizer/tiny/tokenizer.json)
            on tau2-bench text, keeping Qwen3's normalizer, pre-tokenizer,
            decoder and added tokens.
  fixtures  write the small committed fixtures (tests/fixtures/tokenizer/*.jsonl)
            for the Qwen3 and the tiny tokenizer.
  unicode-tables  print the \\p{L}, \\p{N}, \\s tables of src/text/tokenizer.c
            as Hugging Face's regex engine has them (its Unicode version).
  corpus    write the large comparison corpus with expected ids to --out
            (every policy, task text, DB record and tool output of the
            tau2-bench domains, plus synthetic Unicode); --sweep adds every
            Unicode code point in several contexts.

Output: JSON lines. {"op": "encode", "special": bool, "text": str, "ids": [...]},
{"op": "decode", "skip_special": bool, "ids": [...], "text": str} and
{"op": "pretok", "text": str, "lens": [byte length of each pre-token]}. A text
holding U+0000 is written as "text_hex" (UTF-8 bytes in hex) instead, because
the C side reads strings with cJSON, which stops at NUL.

Exit status 77 when the `tokenizers` package cannot be imported (the ctest
that runs the corpus reads it as "skip").
"""
import argparse
import glob
import json
import os
import random
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXDIR = os.path.join(HERE, "fixtures", "tokenizer")
TINY = os.path.join(FIXDIR, "tiny", "tokenizer.json")


def shared_dir():
    return os.environ.get("TAU2_SHARED_DIR", os.path.join(ROOT, "..", "shared"))


def data_dir():
    return os.environ.get("TAU2_DATA_DIR", os.path.join(shared_dir(), "tau2-data"))


def qwen_path():
    return os.path.join(shared_dir(), "qwen3-tokenizer", "tokenizer.json")


def import_tokenizers():
    try:
        import tokenizers  # noqa: F401
        return tokenizers
    except ImportError:
        print("gen_tokenizer_fixtures: python package 'tokenizers' not importable "
              "(pip install tokenizers)", file=sys.stderr)
        sys.exit(77)


# ---------------------------------------------------------------- corpus

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strings_in(value, out):
    """Every string inside a JSON value, recursively."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            strings_in(v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.append(k)
            strings_in(v, out)


def domain_texts(max_records):
    """Policies, task texts, DB records as tool outputs, TOML databases."""
    texts = []
    domains = sorted(glob.glob(os.path.join(data_dir(), "domains", "*")))
    for d in domains:
        for md in sorted(glob.glob(os.path.join(d, "*.md"))):
            body = read(md)
            texts.append(body)
            texts.extend(p for p in body.split("\n\n") if p)
        for toml in sorted(glob.glob(os.path.join(d, "*.toml"))):
            body = read(toml)
            texts.extend(body[i:i + 4000] for i in range(0, len(body), 4000))
        for tj in ("tasks.json", "tasks_small.json"):
            p = os.path.join(d, tj)
            if not os.path.exists(p):
                continue
            tasks = json.loads(read(p))
            for t in tasks[:max_records]:
                texts.append(json.dumps(t, ensure_ascii=False, indent=2))
                strs = []
                strings_in(t, strs)
                texts.extend(s for s in strs if s)
        for dbj in ("db.json", "user_db.json"):
            p = os.path.join(d, dbj)
            if not os.path.exists(p):
                continue
            db = json.loads(read(p))
            for table, rows in db.items():
                items = list(rows.values()) if isinstance(rows, dict) else [rows]
                for i, rec in enumerate(items[:max_records]):
                    # Tool outputs are records dumped as JSON; vary the style.
                    if i % 3 == 0:
                        texts.append(json.dumps(rec))
                    elif i % 3 == 1:
                        texts.append(json.dumps(rec, indent=2))
                    else:
                        texts.append(json.dumps(rec, ensure_ascii=False, indent=4, sort_keys=True))
    return texts


def synthetic_texts(seed=1234, n_pool=600, n_random=300):
    """Unicode, emoji, CJK, digits, whitespace runs, code, special tokens."""
    t = [
        "", " ", "  ", "\n", "\n\n", "\r\n", " \n", "\t", "a", "A", "1", "'", "'s", "<",
        "Hello world", "Hello, world!", " Hello", "hello  world", "hello\tworld",
        "don't I'll we've they're she'd it's I'M YOU'RE DON'T WE'LL 'S 'T",
        "'ſ 'ſt 'S 'K 'K 'ſſ", "O'Neil's", "'''", "'s's's", "x'llama",
        "12345678901234567890", "3.14159 -42 1e10 0x1F 1,000,000 ½ ¾ ² ³ ①②③ ٣٤٥ ४५६ 〇一二",
        "tab\there\tand\t\tthere", "many    spaces   here", "trailing spaces   ",
        "   leading spaces", "line1\nline2\r\nline3\rline4", "\n\n\n\n   \n\t\n",
        " " * 100, "\n" * 50, " \n" * 30, "\t" * 40 + "x", "a" * 3000, "ab" * 700,
        "=" * 500, "-" * 80 + "\n" + "=" * 80, "." * 257, "😀" * 100, " " * 1000 + "x",
        "\u00a0\u00a0nbsp", "ideographic\u3000space", "line\u2028sep\u2029para",
        "mongolian\u180evs", "zw\u200bsp\u200cnj\u200djoiner", "\ufeffbom", "\u0085nel",
        "\x1c\x1d\x1e\x1f seps", "\x0b\x0c vt ff", "\x7f del \x01 ctrl",
        "café naïve résumé Ångström Zoë façade", "cafe\u0301 nai\u0308ve",  # NFC composes
        "\u1100\u1161\u11a8 \u1112\u1161\u11ab", "한국어 텍스트 입니다", "日本語のテキスト、カタカナ。",
        "中文文本，标点符号！“引号”", "繁體中文測試", "Привет, мир! Ёжик", "Ελληνικά κείμενο",
        "עברית טקסט", "مرحبا بالعالم", "हिन्दी पाठ क्षत्रिय", "ภาษาไทย", "Tiếng Việt có dấu",
        "👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️ ✈️ 🧑🏿‍🚀 😀😃😄", "emoji😀inside words", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𝟙𝟚𝟛",
        "Å Å Å", "ﬁ ﬂ ﬃ", "Ⅻ ⅻ", "K Ω Å", "\u0344 \u0958 \u2adc",  # NFC singletons
        "e\u0301\u0302\u0323 stacked", "\u0301leading combining", "a\u0300\u0301\u0302\u0303\u0304" * 10,
        "def f(x):\n    return x**2  # square\n\nprint(f(3))\n",
        "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
        '{"user_id": "mia_li_3668", "amount": 1234.50, "items": [1, 2, 3], "ok": true, "x": null}',
        "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>", "SELECT * FROM t WHERE a='b';",
        "https://example.com/path?q=1&r=two#frag", "user@example.com", "C:\\path\\to\\file.txt",
        "$100.00 €50 £30 ¥1000 ₹500", "100% of 50% is 25%", "2024-05-15T10:30:00Z",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
        "<tool_call>\n{\"name\": \"get_user\", \"arguments\": {\"user_id\": \"u1\"}}\n</tool_call>",
        "<tool_response>\n{\"ok\": true}\n</tool_response>", "<think>\nhmm\n</think>\n\nanswer",
        "<|im_end", "<|im_end|", "<<|im_end|>>", "<|im_end|><|im_end|>", "x<|endoftext|>y",
        "<|im_start|><|im_start|>", "< |im_end| >", "<|IM_END|>", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
        "<|vision_start|><|image_pad|><|vision_end|>", "text <|im_end|> text", "  <|im_end|>  ",
        "\n<|im_end|>\n", "<tool_call><tool_call>", "</tool_call", "<|box_start|>(1,2)<|box_end|>",
        "\ufffd replacement", "\U0010fffd private \ue000 \U000f0000", "\ufdd0 \uffff nonchar",
    ]
    rnd = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7f)],
        [chr(c) for c in range(0x20, 0x7f)] + [" "] * 20 + ["\n"] * 5 + ["\t", "'"] * 3,
        [chr(c) for c in range(0xa0, 0x250)] + [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x4e00, 0x4e00 + 500)] + ["，", "。", " ", "\n"],
        [chr(c) for c in range(0x1f300, 0x1f650)] + ["\u200d", "\ufe0f", " ", "🏽"],
        [chr(c) for c in range(0xac00, 0xac00 + 300)] + [chr(c) for c in range(0x1100, 0x1200)],
        ["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<", "|", ">", "im", "_end",
         " ", "\n", "a", "'s", "1", "é", "e\u0301"],
    ]
    for i in range(n_pool):
        pool = pools[i % len(pools)]
        t.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 120))))
    for i in range(n_random):
        # Random code points from the whole range (no surrogates).
        cps = []
        for _ in range(rnd.randint(1, 40)):
            c = rnd.choice([rnd.randint(0, 0x7f), rnd.randint(0x80, 0x7ff), rnd.randint(0x800, 0xffff),
                            rnd.randint(0x10000, 0x10ffff)])
            if 0xd800 <= c <= 0xdfff:
                c = 0x41
            cps.append(chr(c))
        t.append("".join(cps))
    return t


def sweep_texts(step=1):
    """Every step-th code point in several contexts, 64 code points a text."""
    cps = [c for c in range(0, 0x110000, step) if not 0xd800 <= c <= 0xdfff]
    out = []
    for i in range(0, len(cps), 64):
        parts = []
        for c in cps[i:i + 64]:
            ch = chr(c)
            parts.append(f"a{ch}b {ch}{ch}1{ch} '{ch}\n")
        out.append("".join(parts))
    return out


# ----------------------------------------------------------------- output

def text_field(s):
    if "\x00" in s:
        return {"text_hex": s.encode("utf-8").hex()}
    return {"text": s}


def encode_records(tok, texts, both_modes):
    recs = []
    modes = [True, False] if both_modes else [True]
    for special in modes:
        tok.encode_special_tokens = not special
        encs = tok.encode_batch(texts, add_special_tokens=True)
        for s, e in zip(texts, encs):
            rec = {"op": "encode", "special": special}
            rec.update(text_field(s))
            rec["ids"] = e.ids
            recs.append(rec)
    tok.encode_special_tokens = False
    return recs


def pretok_records(tok, texts):
    """Pre-token byte lengths (normalizer, then pre-tokenizer): catches a
    regex difference even where the ids happen to agree."""
    recs = []
    for t in texts:
        norm = tok.normalizer.normalize_str(t) if tok.normalizer else t
        # ByteLevel spells each byte as one character.
        lens = [len(piece) for piece, _ in tok.pre_tokenizer.pre_tokenize_str(norm)]
        rec = {"op": "pretok"}
        rec.update(text_field(t))
        rec["lens"] = lens
        recs.append(rec)
    return recs


def decode_records(tok, n, seed=99):
    """Random id sequences: byte tokens split UTF-8 across tokens, added
    tokens with and without skipping, and ids out of range."""
    rnd = random.Random(seed)
    vs = tok.get_vocab_size(with_added_tokens=True)
    vocab = tok.get_vocab(with_added_tokens=True)
    # Single-byte tokens of the high half: they make invalid UTF-8.
    from tokenizers.pre_tokenizers import ByteLevel
    alphabet = sorted(ByteLevel.alphabet())
    byte_ids = [vocab[c] for c in alphabet if c in vocab]
    added = sorted(tok.get_added_tokens_decoder().keys())
    recs = []
    for i in range(n):
        ids = []
        for _ in range(rnd.randint(0, 24)):
            r = rnd.random()
            if r < 0.45:
                ids.append(rnd.choice(byte_ids))
            elif r < 0.8:
                ids.append(rnd.randrange(vs))
            elif r < 0.97:
                ids.append(rnd.choice(added) if added else 0)
            else:
                ids.append(vs + rnd.randrange(1000))
        skip = bool(i % 2)
        text = tok.decode(ids, skip_special_tokens=skip)
        rec = {"op": "decode", "skip_special": skip, "ids": ids}
        rec.update(text_field(text))
        recs.append(rec)
    return recs


def write_jsonl(path, recs):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# --------------------------------------------------------------- commands

def cmd_tiny(args):
    tk = import_tokenizers()
    from tokenizers import Tokenizer, models, trainers, pre_tokenizers
    qwen = json.loads(read(qwen_path()))
    tok = Tokenizer(models.BPE())
    tok.normalizer = Tokenizer.from_str(json.dumps(qwen)).normalizer
    tok.pre_tokenizer = Tokenizer.from_str(json.dumps(qwen)).pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = []
    for md in sorted(glob.glob(os.path.join(data_dir(), "domains", "*", "*.md"))):
        texts.append(read(md))
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())
    n = len(spec["model"]["vocab"])
    # Qwen3's added tokens, same flags, numbered after the tiny vocabulary.
    spec["added_tokens"] = []
    for i, a in enumerate(qwen["added_tokens"]):
        a = dict(a)
        a["id"] = n + i
        spec["added_tokens"].append(a)
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        spec[key] = qwen[key]
    text = json.dumps(spec, ensure_ascii=False, indent=2) + "\n"
    Tokenizer.from_str(text)  # HF must accept it
    os.makedirs(os.path.dirname(TINY), exist_ok=True)
    with open(TINY, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {TINY}: {n} tokens + {len(spec['added_tokens'])} added, tokenizers {tk.__version__}")


def cmd_fixtures(args):
    import_tokenizers()
    from tokenizers import Tokenizer
    rnd = random.Random(7)
    synth = synthetic_texts(n_pool=150, n_random=80)
    dom = domain_texts(max_records=40)
    dom = [t for t in dom if len(t) < 3000]
    rnd.shuffle(dom)
    for name, path, n_dom in (("qwen3", qwen_path(), 100), ("tiny", TINY, 40)):
        tok = Tokenizer.from_file(path)
        texts = synth + dom[:n_dom]
        recs = encode_records(tok, texts, both_modes=False)
        # Both special-token modes on the texts that hold added tokens.
        specials = [t for t in synth if "<" in t]
        recs += encode_records(tok, specials, both_modes=True)[len(specials):]
        recs += decode_records(tok, 150)
        recs += pretok_records(tok, synth)
        out = os.path.join(FIXDIR, f"{name}_cases.jsonl")
        write_jsonl(out, recs)
        print(f"wrote {out}: {len(recs)} records, {os.path.getsize(out)} bytes")


def cmd_corpus(args):
    import_tokenizers()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer or qwen_path())
    texts = [] if args.only_sweep else synthetic_texts() + domain_texts(max_records=args.max_records)
    if args.sweep:
        texts += sweep_texts(args.sweep)
    recs = encode_records(tok, texts, both_modes=True)
    # HF's own round trip: decoding the ids gives the NFC text back.
    bad = 0
    for t, r in zip(texts, recs):
        if tok.decode(r["ids"], skip_special_tokens=False) != unicodedata.normalize("NFC", t):
            bad += 1
    if bad:
        print(f"note: HF decode(encode(x)) != NFC(x) for {bad} texts", file=sys.stderr)
    recs += decode_records(tok, 2000, seed=args.seed)
    recs += pretok_records(tok, [t for t in texts if len(t) < 20000])
    write_jsonl(args.out, recs)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"wrote {args.out}: {len(recs)} records, {len(texts)} texts, {nbytes} text bytes")


def cmd_unicode_tables(args):
    """Print the C tables of tokenizer.c: the code points Hugging Face's
    regex engine takes as \\p{L}, \\p{N} and \\s, found by asking its
    pre-tokenizer how it splits c+c+"x" for every code point c:
    letters give one piece, numbers three, whitespace 1+2, others 2+1."""
    import_tokenizers()
    from tokenizers import Tokenizer
    pre = Tokenizer.from_file(qwen_path()).pre_tokenizer
    kinds = {(3,): "L", (1, 1, 1): "N", (1, 2): "S", (2, 1): "O"}
    ranges = {"L": [], "N": [], "S": []}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        sig = tuple(e - s for _, (s, e) in pre.pre_tokenize_str(ch + ch + "x"))
        k = kinds[sig]
        if ch in "\r\n":  # "\s*[\r\n]+" takes them like others here
            k = "S"
        if k in ranges:
            rs = ranges[k]
            if rs and rs[-1][1] == c - 1:
                rs[-1][1] = c
            else:
                rs.append([c, c])
    names = {"L": "uni_letter", "N": "uni_number", "S": "uni_space"}
    for k, rs in ranges.items():
        print(f"static const uint32_t {names[k]}[][2] = {{")
        for i in range(0, len(rs), 6):
            print("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in rs[i:i + 6]))
        print("};")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tiny")
    p.add_argument("--vocab-size", type=int, default=512)
    sub.add_parser("fixtures")
    p = sub.add_parser("corpus")
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer")
    p.add_argument("--max-records", type=int, default=100000)
    p.add_argument("--sweep", type=int, default=0, help="add every N-th code point (0: none)")
    p.add_argument("--only-sweep", action="store_true", help="only the code point sweep")
    p.add_argument("--seed", type=int, default=99)
    sub.add_parser("unicode-tables")
    args = ap.parse_args()
    {"tiny": cmd_tiny, "fixtures": cmd_fixtures, "corpus": cmd_corpus,
     "unicode-tables": cmd_unicode_tables}[args.cmd](args)


if __name__ == "__main__":
    main()
