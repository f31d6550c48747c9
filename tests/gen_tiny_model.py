#!/usr/bin/env python3
"""Write inputs/tiny_model/, a randomly initialized Qwen3 small enough to train
on a CPU in CI, and its tokenizer fixture.

The tokenizer is Qwen3's own cut down to its first K byte-level BPE tokens.
In Qwen's tokenizer.json the 256 single-byte tokens have ids 0-255 and token
256 + r is the result of merge r (the script checks this), so keeping the
ids below K and the first K - 256 merges is again a complete BPE: every merge
result it can produce is in the vocabulary. Normalizer, pre-tokenizer,
post-processor and decoder are unchanged. Qwen3's 26 added tokens follow at
K, K+1, ... in their order, and K = 4096 - 26 makes the vocabulary exactly
4096 (a multiple of 64, no unused embedding rows).

Files:
  inputs/tiny_model/tokenizer.json         the derived tokenizer
  inputs/tiny_model/tokenizer_config.json  Qwen3's, added-token ids renumbered
  inputs/tiny_model/config.json            Qwen3ForCausalLM, 2 layers, hidden 64
  inputs/tiny_model/model.safetensors      BF16 weights, N(0, 0.02) matrices and
                                           ones for norms (transformers' init), seed 0
  tests/fixtures/tokenizer/tiny_model_cases.jsonl
      {"op": "encode", "special": bool, "text": str, "ids": [...]}
      {"op": "decode", "skip_special": bool, "ids": [...], "text": str}
      {"op": "chat", "messages": [...], "tools": [...]|null,
       "add_generation_prompt": bool, "kwargs": {...}|null, "text": str, "ids": [...]}
      {"op": "score", "ids": [...], "logprob": [...], "entropy": [...]}
  ids from Hugging Face `tokenizers`, chat texts from transformers'
  apply_chat_template, logprob/entropy of next tokens from a float64 NumPy
  forward of the model (the bf16 weights as stored).

Run: python3 tests/gen_tiny_model.py   (tokenizers, transformers, numpy; no torch)
Reads ../shared/qwen3-tokenizer and ../shared/tau2-data (or TAU2_SHARED_DIR).
"""
import glob
import json
import os
import struct
import sys
import unicodedata

import numpy as np
from qwen3_tensors import tensor_specs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "inputs", "tiny_model")
CASES = os.path.join(HERE, "fixtures", "tokenizer", "tiny_model_cases.jsonl")

VOCAB = 4096
N_ADDED = 26  # Qwen3's added tokens
K = VOCAB - N_ADDED
SEED = 0

CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": None,
    "eos_token_id": None,  # <|im_end|>, filled in below
    "head_dim": 32,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 192,
    "max_position_embeddings": 32768,
    "max_window_layers": 2,
    "model_type": "qwen3",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": VOCAB,
}


def shared_dir():
    return os.environ.get("TAU2_SHARED_DIR", os.path.join(ROOT, "..", "shared"))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


# ---------------------------------------------------------------- tokenizer

def derive_tokenizer(qwen):
    """Qwen's tokenizer.json object cut to ids < K plus the added tokens."""
    vocab = qwen["model"]["vocab"]
    merges = qwen["model"]["merges"]
    by_id = {i: s for s, i in vocab.items()}
    # The property the cut relies on: single bytes first, then merge r makes id 256 + r.
    assert len(by_id) == len(vocab) == len(merges) + 256
    assert all(len(by_id[i]) == 1 for i in range(256))
    for r, (a, b) in enumerate(merges):
        i = 256 + r
        assert by_id[i] == a + b and vocab[a] < i and vocab[b] < i, "merge %d is not id %d" % (r, i)
    added = qwen["added_tokens"]
    assert len(added) == N_ADDED and [a["id"] for a in added] == list(range(len(vocab), len(vocab) + N_ADDED))

    tok = json.loads(json.dumps(qwen))
    tok["model"]["vocab"] = {by_id[i]: i for i in range(K)}
    tok["model"]["merges"] = merges[:K - 256]
    new_added = []
    for j, a in enumerate(added):
        a = dict(a)
        a["id"] = K + j
        new_added.append(a)
    tok["added_tokens"] = new_added
    return tok


def derive_tokenizer_config(qwen_cfg, tok):
    cfg = json.loads(json.dumps(qwen_cfg))
    old = cfg["added_tokens_decoder"]
    new_id = {a["content"]: a["id"] for a in tok["added_tokens"]}
    dec = {}
    for _, entry in sorted(old.items(), key=lambda kv: int(kv[0])):
        dec[str(new_id[entry["content"]])] = entry
    cfg["added_tokens_decoder"] = dec
    cfg["eos_token"] = "<|im_end|>"
    cfg["pad_token"] = "<|endoftext|>"
    return cfg


# ---------------------------------------------------------------- weights


def to_bf16_bits(x):
    """float32 array -> uint16 bf16 bits, round to nearest even (no NaNs here)."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def bf16_bits_to_f32(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def init_weights(c):
    """transformers' Qwen3 _init_weights: Linear/Embedding N(0, initializer_range), RMSNorm ones."""
    rng = np.random.default_rng(SEED)
    w = {}
    for name, shape in tensor_specs(c):
        if len(shape) == 1:
            t = np.ones(shape, dtype=np.float32)
        else:
            t = rng.normal(0.0, c["initializer_range"], size=shape).astype(np.float32)
        w[name] = to_bf16_bits(t)
    return w


def write_safetensors_bf16(path, w):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, bits in w.items():
        n = bits.size * 2
        header[name] = {"dtype": "BF16", "shape": list(bits.shape), "data_offsets": [offset, offset + n]}
        offset += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for bits in w.values():
            f.write(bits.astype("<u2").tobytes())


# ---------------------------------------------------------------- reference forward

def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope_tables(P, D, theta):
    # transformers' rotary embedding: inv_freq and angles in float32
    inv = (1.0 / (np.float32(theta) ** (np.arange(0, D, 2, dtype=np.float32) / np.float32(D)))).astype(np.float32)
    freqs = np.arange(P, dtype=np.float32)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float64), np.sin(emb).astype(np.float64)


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(c, w, tokens):
    """Logits (T, V) of one sequence, float64."""
    L, eps = c["num_hidden_layers"], c["rms_norm_eps"]
    NH, NKV, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    T = len(tokens)
    emb = w["model.embed_tokens.weight"]
    x = emb[np.array(tokens)]
    cos, sin = rope_tables(T, D, c["rope_theta"])
    cos, sin = cos[:, None, :], sin[:, None, :]
    mask = np.tril(np.ones((T, T), dtype=bool))
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, NH, D)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, NKV, D)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, NKV, D)
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, NH // NKV, axis=1)
        v = np.repeat(v, NH // NKV, axis=1)
        sc = np.einsum("ihd,jhd->hij", q, k) / np.sqrt(D)
        sc = np.where(mask[None], sc, -np.inf)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        pr = sc / sc.sum(-1, keepdims=True)
        att = np.einsum("hij,jhd->ihd", pr, v).reshape(T, NH * D)
        x = x + att @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1.0 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    return x @ emb.T


def score(c, w, tokens):
    """logprob of each next token (0 at the end) and entropy, float64."""
    z = forward(c, w, tokens)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ent = -(np.exp(logp) * logp).sum(-1)
    lp = [float(logp[t, tokens[t + 1]]) for t in range(len(tokens) - 1)] + [0.0]
    return lp, [float(e) for e in ent]


# ---------------------------------------------------------------- sample text

def policies():
    return {os.path.relpath(p, os.path.join(shared_dir(), "tau2-data", "domains")): read(p)
            for p in sorted(glob.glob(os.path.join(shared_dir(), "tau2-data", "domains", "*", "*.md")))}


def tool_calls(domain, n_tasks):
    """Gold actions of a domain's tasks as the Qwen3 template writes tool calls."""
    tasks = json.loads(read(os.path.join(shared_dir(), "tau2-data", "domains", domain, "tasks.json")))
    out = []
    for t in tasks[:n_tasks]:
        for a in ((t.get("evaluation_criteria") or {}).get("actions") or []):
            call = {"name": a["name"], "arguments": a["arguments"]}
            out.append("<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>")
    return out


TOOLS = [
    {"type": "function", "function": {
        "name": "get_order_details", "description": "Look up an order by its id.",
        "parameters": {"type": "object", "properties": {
            "order_id": {"type": "string", "description": "The order id, such as '#W0000000'."}},
            "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "cancel_pending_order", "description": "Cancel an order that has not shipped.",
        "parameters": {"type": "object", "properties": {
            "order_id": {"type": "string"},
            "reason": {"type": "string", "enum": ["no longer needed", "ordered by mistake"]}},
            "required": ["order_id", "reason"]}}},
]

SYSTEM = "You are a store support agent. Follow the rules below.\n\n# Rules\n- Verify the user first.\n- One tool call at a time."

CONVERSATION = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hi! I'd like to cancel order #W1234567, please."},
    {"role": "assistant", "content": "Sure, let me look it up.",
     "tool_calls": [{"type": "function", "id": "call_0",
                     "function": {"name": "get_order_details", "arguments": {"order_id": "#W1234567"}}}]},
    {"role": "tool", "tool_call_id": "call_0",
     "content": json.dumps({"order_id": "#W1234567", "status": "pending", "items": [
         {"name": "Water Bottle", "price": 25.99, "options": {"capacity": "750ml", "color": "blue"}}]})},
    {"role": "assistant", "content": "Your order is pending. Why do you want to cancel it?"},
    {"role": "user", "content": "I ordered it by mistake — sorry ☺"},
]

UNICODE = [
    "café résumé naïve", "cafe\u0301 (decomposed é)", "Straße Ærøskøbing Łódź",
    "你好，世界！订单号 #W2378156", "こんにちは、カタカナ", "안녕하세요",
    "مرحبا بالعالم", "שלום", "Привет, как дела?", "Ελληνικά",
    "emoji 😀👍🏽 👨‍👩‍👧 🇺🇸", "math ∑ ∫ √2 ≤ ≥ ≠ ∞", "tabs\tand\r\nCRLF\n\n\nlines",
    "   leading and trailing   ", "numbers 1234567890 3.14159 -42 1e-6 $1,234.56",
    "'s 't 're 've 'm 'll 'd", "DON'T I'M WE'LL", "\u00a0nbsp\u2003em space\u3000ideographic",
    "zero\u200bwidth", "ﬁ ligature ① ２ Ⅻ", "ÅÅ Å (angstrom sign)",
]


def chat_cases():
    conv = CONVERSATION
    think_turn = {"role": "assistant", "content": "<think>\nThe user wants to cancel.\n</think>\n\nLet me check."}
    return [
        (conv[:2], None, True, None),
        (conv, TOOLS, True, None),
        (conv, TOOLS, True, {"enable_thinking": False}),
        (conv[:5], TOOLS, False, None),
        (conv[:2] + [think_turn, {"role": "user", "content": "Thanks."}], None, True, None),
    ]


# ---------------------------------------------------------------- main

def main():
    from tokenizers import Tokenizer
    import transformers

    qdir = os.path.join(shared_dir(), "qwen3-tokenizer")
    qwen = json.loads(read(os.path.join(qdir, "tokenizer.json")))
    tok_obj = derive_tokenizer(qwen)
    tok_cfg = derive_tokenizer_config(json.loads(read(os.path.join(qdir, "tokenizer_config.json"))), tok_obj)
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "tokenizer.json"), tok_obj, indent=None)
    write_json(os.path.join(OUT, "tokenizer_config.json"), tok_cfg)

    tok = Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    full = Tokenizer.from_file(os.path.join(qdir, "tokenizer.json"))
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB
    eos = tok.token_to_id("<|im_end|>")
    cfg = dict(CONFIG, eos_token_id=eos)
    write_json(os.path.join(OUT, "config.json"), cfg)

    bits = init_weights(cfg)
    write_safetensors_bf16(os.path.join(OUT, "model.safetensors"), bits)
    w = {n: bf16_bits_to_f32(b).astype(np.float64) for n, b in bits.items()}

    # transformers reads the config and the tokenizer directory (no torch needed).
    hf_cfg = transformers.AutoConfig.from_pretrained(OUT)
    assert hf_cfg.model_type == "qwen3" and hf_cfg.vocab_size == VOCAB
    hf_tok = transformers.AutoTokenizer.from_pretrained(OUT)
    assert hf_tok.eos_token_id == eos and hf_tok.pad_token_id == tok.token_to_id("<|endoftext|>")

    # Round trips and compression on τ²-bench text.
    pol = policies()
    calls = tool_calls("retail", 114) + tool_calls("airline", 50)
    samples = list(pol.values()) + calls + UNICODE
    samples.append(read(os.path.join(shared_dir(), "tau2-data", "domains", "retail", "tasks.json"))[:200000])
    for s in samples:
        ids = tok.encode(s).ids
        assert max(ids) < VOCAB
        assert tok.decode(ids, skip_special_tokens=False) == unicodedata.normalize("NFC", s), s[:80]
    retail = pol[os.path.join("retail", "policy.md")]
    calls_text = "\n".join(calls)
    for name, text in (("retail policy", retail), ("tool-call JSON", calls_text)):
        n, nf = len(tok.encode(text).ids), len(full.encode(text).ids)
        print("%-15s %6d chars: tiny %6d tokens (%.2f chars/token), Qwen3 %6d (%.2f)" %
              (name, len(text), n, len(text) / n, nf, len(text) / nf))

    # Fixture.
    recs = []

    def enc(text, special=True):
        tok.encode_special_tokens = not special
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        recs.append({"op": "encode", "special": special, "text": text, "ids": ids})
        return ids

    for path, body in pol.items():
        paras = [p for p in body.split("\n\n") if p.strip()]
        for p in paras[:: max(1, len(paras) // 8)][:8]:
            enc(p)
    enc(retail)
    for c in calls[::12]:
        enc(c)
    for u in UNICODE:
        enc(u)
    for t in ("", " ", "\n", "a", "<|im_start|>", "<|im_end|>\n", "<tool_call></tool_call>",
              "<think>\n\n</think>\n\n", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
              "x<|endoftext|>y<|fim_pad|>z", "<|im_start", "<tool_response>\n{\"ok\": true}\n</tool_response>"):
        enc(t, True)
        enc(t, False)
    chats = []
    for messages, tools, gen, kwargs in chat_cases():
        text = hf_tok.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, tokenize=False,
                                          **(kwargs or {}))
        ids = tok.encode(text, add_special_tokens=False).ids
        recs.append({"op": "chat", "messages": messages, "tools": tools, "add_generation_prompt": gen,
                     "kwargs": kwargs, "text": text, "ids": ids})
        chats.append(ids)
    for ids in (chats[1][:40], chats[4], [K + 1, 220, 9707, K + 2]):
        for skip in (False, True):
            recs.append({"op": "decode", "skip_special": skip, "ids": ids,
                         "text": tok.decode(ids, skip_special_tokens=skip)})
    # a token sequence cut inside a multi-byte character: U+FFFD on decode
    cut = tok.encode("😀").ids[:1]
    recs.append({"op": "decode", "skip_special": False, "ids": cut, "text": tok.decode(cut)})
    ids = chats[1]
    lp, ent = score(cfg, w, ids)
    recs.append({"op": "score", "ids": ids, "logprob": lp, "entropy": ent})
    print("score: %d tokens, mean logprob %.5f (uniform %.5f), entropy %.6f..%.6f" %
          (len(ids), float(np.mean(lp[:-1])), -np.log(VOCAB), min(ent), max(ent)))

    with open(CASES, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    sizes = {n: os.path.getsize(os.path.join(OUT, n)) for n in sorted(os.listdir(OUT))}
    print("wrote", OUT, sizes)
    print("wrote", CASES, len(recs), "records,", os.path.getsize(CASES), "bytes")


if __name__ == "__main__":
    sys.exit(main())
