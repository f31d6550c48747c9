#!/usr/bin/env python3
"""Generate tests/fixtures/safetensors: valid files written by the Python
`safetensors` package (its Rust core is the reference writer), their expected
values, deliberately broken files with the error substrings the C reader must
give, and fp16/bf16 conversion tables from numpy.

Needs the `safetensors` and `numpy` packages:
    python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install safetensors numpy
    /tmp/hfvenv/bin/python tests/gen_safetensors_fixtures.py

bf16 has no numpy dtype; its fp32 -> bf16 rounding is written out here as
torch's c10::BFloat16 does it (add 0x7FFF plus the kept LSB, truncate; every
NaN becomes 0x7FC0, as c10::BFloat16 does; torch's vectorized CPU kernel
gives 0xFFFF instead). If torch is importable its results are compared too.

`--check FILE...` loads files (e.g. ones written by st_writer_save) with the
Python library and prints their tensors, to confirm interoperability by hand.
"""
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np
import safetensors
import safetensors.numpy as stnp

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "safetensors")
RNG = np.random.default_rng(20240611)


# ---- helpers ----

def bf16_bits(f32):
    """fp32 array -> uint16 bf16 bits, round to nearest even, NaN -> 0x7FC0."""
    a = np.asarray(f32, dtype=np.float32)
    u = a.reshape(-1).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[(u & 0x7FFFFFFF) > 0x7F800000] = 0x7FC0
    return r.reshape(a.shape)


def save_spec(path, tensors, metadata=None):
    """tensors: name -> (dtype name as safetensors' Python side spells it,
    shape, little-endian bytes). Goes through the reference serializer."""
    keep = []
    specs = {}
    for name, (dt, shape, data) in tensors.items():
        buf = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        keep.append(buf)
        specs[name] = safetensors.TensorSpec(dtype=dt, shape=list(shape), data_ptr=buf.ctypes.data,
                                             data_len=buf.nbytes)
    safetensors.serialize_file(specs, path, metadata=metadata)


def raw_file(path, header, data=b"", hlen=None):
    """A file written by hand: header is a str (JSON text) or bytes."""
    hb = header.encode() if isinstance(header, str) else header
    n = len(hb) if hlen is None else hlen
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", n) + hb + data)


def expected_entry(dtype, shape, data):
    """What the C test checks: dtype, shape, raw bytes (hex) and, for float
    dtypes, the exact fp32 bits st_to_f32 must produce."""
    e = {"dtype": dtype, "shape": list(shape), "hex": bytes(data).hex()}
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    if dtype == "F32":
        f = raw.view(np.float32)
    elif dtype == "F16":
        f = raw.view(np.float16).astype(np.float32)
    elif dtype == "BF16":
        f = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F64":
        with np.errstate(over="ignore"):
            f = raw.view(np.float64).astype(np.float32)
    else:
        f = None
    if f is not None:
        e["f32_bits"] = [int(x) for x in np.asarray(f, dtype=np.float32).view(np.uint32)]
    return e


SPEC_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
             "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def write_valid(path, tensors, metadata=None):
    """tensors: name -> (dtype, shape, bytes). Returns the expected JSON entry."""
    save_spec(path, {k: (SPEC_NAME[d], s, b) for k, (d, s, b) in tensors.items()}, metadata)
    return {"metadata": metadata or {}, "tensors": {k: expected_entry(d, s, b) for k, (d, s, b) in tensors.items()}}


# ---- valid files ----

SPECIALS32 = np.array([0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan, 3.4028235e38, 1e-45, -1.17549435e-38,
                       65504.0, 65520.0, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 1.00390625, 1.0078125],
                      dtype=np.float32)


def gen_valid(expected):
    d = os.path.join(OUT, "valid")
    os.makedirs(d, exist_ok=True)
    a = np.arange(6, dtype=np.float32).reshape(2, 3) * np.float32(0.5) - np.float32(1)
    expected["valid/f32.safetensors"] = write_valid(os.path.join(d, "f32.safetensors"), {
        "a": ("F32", a.shape, a.tobytes()),
        "specials": ("F32", SPECIALS32.shape, SPECIALS32.tobytes()),
    })
    h = np.array([0.0, -0.0, 1.0, -2.0, 65504.0, -65504.0, np.inf, -np.inf, np.nan, 6.1035156e-05, 5.9604645e-08,
                  -5.9604645e-08, 3.0517578e-05, 0.333], dtype=np.float16)
    hb = np.concatenate([h.view(np.uint16), np.array([0x7C01, 0xFE00, 0x03FF, 0x8001], dtype=np.uint16)])
    r = RNG.standard_normal((3, 4)).astype(np.float16)
    expected["valid/f16.safetensors"] = write_valid(os.path.join(d, "f16.safetensors"), {
        "h": ("F16", hb.shape, hb.tobytes()),
        "r": ("F16", r.shape, r.tobytes()),
    })
    b = bf16_bits(SPECIALS32)
    b = np.concatenate([b, np.array([0x7F81, 0xFFC1, 0x0001, 0x8080, 0x3F80], dtype=np.uint16)])
    w = bf16_bits(RNG.standard_normal((2, 2, 5)).astype(np.float32))
    expected["valid/bf16.safetensors"] = write_valid(os.path.join(d, "bf16.safetensors"), {
        "model.layers.0.mlp.up_proj.weight": ("BF16", w.shape, w.tobytes()),
        "b": ("BF16", b.shape, b.tobytes()),
    })
    mixed = {
        "scalar": ("F32", [], np.array(2.5, dtype=np.float32).tobytes()),
        "empty": ("F32", [0, 4], b""),
        "empty_bf16": ("BF16", [3, 0], b""),
        "f64": ("F64", [3], np.array([1.0 / 3, 1e300, -2.0], dtype=np.float64).tobytes()),
        "i64": ("I64", [2], np.array([-1, 1 << 40], dtype=np.int64).tobytes()),
        "i32": ("I32", [2], np.array([7, -7], dtype=np.int32).tobytes()),
        "i8": ("I8", [3], np.array([-128, 0, 127], dtype=np.int8).tobytes()),
        "u8": ("U8", [1, 1, 1, 2], np.array([0, 255], dtype=np.uint8).tobytes()),
        "mask": ("BOOL", [3], np.array([True, False, True]).tobytes()),
    }
    expected["valid/mixed.safetensors"] = write_valid(os.path.join(d, "mixed.safetensors"), mixed,
                                                      {"format": "pt", "note": "caf\u00e9 \"quoted\"\n"})
    expected["valid/empty_file.safetensors"] = write_valid(os.path.join(d, "empty_file.safetensors"), {})

    # A single-file model directory.
    sd = os.path.join(OUT, "single_dir")
    os.makedirs(sd, exist_ok=True)
    expected["single_dir"] = write_valid(os.path.join(sd, "model.safetensors"), {
        "lm_head.weight": ("F32", a.shape, a.tobytes()),
        "model.norm.weight": ("BF16", [3], bf16_bits(np.array([1, 2, 3], np.float32)).tobytes()),
    }, {"format": "pt"})

    # A two-shard directory with an index (shards hold tensors in another
    # order than the index, which lists them as transformers writes it: sorted).
    sh = os.path.join(OUT, "sharded")
    os.makedirs(sh, exist_ok=True)
    t1 = {"model.embed_tokens.weight": ("BF16", [4, 2], bf16_bits(np.linspace(-1, 1, 8, dtype=np.float32)).tobytes()),
          "model.layers.0.self_attn.q_proj.weight": ("F32", [2, 2], np.array([1, 2, 3, 4], np.float32).tobytes())}
    t2 = {"model.norm.weight": ("BF16", [2], bf16_bits(np.array([0.5, -0.25], np.float32)).tobytes()),
          "lm_head.weight": ("F16", [2, 4], np.arange(8, dtype=np.float16).tobytes())}
    e1 = write_valid(os.path.join(sh, "model-00001-of-00002.safetensors"), t1, {"format": "pt"})
    e2 = write_valid(os.path.join(sh, "model-00002-of-00002.safetensors"), t2, {"format": "pt"})
    wm = {k: "model-00001-of-00002.safetensors" for k in t1}
    wm.update({k: "model-00002-of-00002.safetensors" for k in t2})
    wm = dict(sorted(wm.items()))
    total = sum(len(v[2]) for v in list(t1.values()) + list(t2.values()))
    with open(os.path.join(sh, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    tensors = dict(e1["tensors"])
    tensors.update(e2["tensors"])
    expected["sharded"] = {"order": list(wm), "tensors": tensors}


# ---- writer reference files ----

def gen_writer_refs():
    """The same tensors in F32, BF16 and F16 as the reference writer lays
    them out; the C test rebuilds them with st_writer and compares bytes."""
    d = os.path.join(OUT, "writer")
    os.makedirs(d, exist_ok=True)
    vals = {
        "model.layers.10.mlp.down_proj.weight": RNG.standard_normal((3, 5)).astype(np.float32),
        "model.layers.2.mlp.down_proj.weight": RNG.standard_normal((5, 3)).astype(np.float32) * 1e-3,
        "lm_head.weight": np.concatenate([SPECIALS32, RNG.standard_normal(7).astype(np.float32) * 70000]),
        "B_upper": np.array(7.0, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "caf\u00e9": np.array([1.0, 2.0], dtype=np.float32),
    }
    meta = {"format": "pt"}
    stnp.save_file(vals, os.path.join(d, "ref_f32.safetensors"), metadata=meta)
    save_spec(os.path.join(d, "ref_bf16.safetensors"),
              {k: ("bfloat16", v.shape, bf16_bits(v).tobytes()) for k, v in vals.items()}, meta)
    stnp.save_file({k: v.astype(np.float16) for k, v in vals.items()}, os.path.join(d, "ref_f16.safetensors"),
                   metadata=meta)


# ---- conversion tables ----

def gen_conversions():
    """fp32 inputs chosen to hit every rounding case, with numpy's fp16 and
    the torch-rule bf16 results; plus the sha256 of numpy's fp16 -> fp32 over
    all 65536 bit patterns."""
    parts = [
        RNG.integers(0, 1 << 32, 6000, dtype=np.uint64).astype(np.uint32),
        # fp16 halfway and near-halfway cases, normal and subnormal ranges
        (RNG.integers(0x33000000 >> 13, 0x47800000 >> 13, 1500, dtype=np.uint64).astype(np.uint32) << 13) | 0x1000,
        (RNG.integers(0x33000000 >> 13, 0x47800000 >> 13, 500, dtype=np.uint64).astype(np.uint32) << 13) | 0x0FFF,
        (RNG.integers(0x33000000 >> 13, 0x47800000 >> 13, 500, dtype=np.uint64).astype(np.uint32) << 13) | 0x1001,
        # bf16 halfway and near-halfway cases
        (RNG.integers(0, 1 << 16, 1500, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000,
        (RNG.integers(0, 1 << 16, 500, dtype=np.uint64).astype(np.uint32) << 16) | 0x7FFF,
        # every boundary: around fp16 max, smallest subnormals, ties to 0
        np.arange(0x477FE000 - 4, 0x477FF000 + 5, dtype=np.uint32),
        np.arange(0x32FFFFFE, 0x33000003, dtype=np.uint32),
        np.arange(0x337FFFFE, 0x33800003, dtype=np.uint32),
        np.arange(0x387FFFFE, 0x38800003, dtype=np.uint32),
        np.array([0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000, 0x7FFFFFFF, 0xFFC00001, 0x7F7F8000, 0x7F7F7FFF,
                  0x00000001, 0x80000001, 0x00800000, 0x80000000, 0x3F800000, 0x3F808000, 0x3F818000], np.uint32),
    ]
    bits = np.concatenate(parts)
    bits = np.concatenate([bits, bits[:3000] | 0x80000000])
    f = bits.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = f.astype(np.float16).view(np.uint16)
    b = bf16_bits(f)
    try:  # cross-check the bf16 rule against torch when it is importable
        import torch
        tb = torch.from_numpy(f.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        # torch's scalar path gives 0x7FC0 for NaN, its vectorized CPU kernel 0xFFFF: compare the rest.
        ok = (bits & 0x7FFFFFFF) <= 0x7F800000
        assert np.array_equal(tb[ok], b[ok]), "bf16 rule differs from torch"
        print("bf16 rounding matches torch", torch.__version__)
    except ImportError:
        pass
    all_h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    sha = hashlib.sha256(all_h.view(np.float16).astype(np.float32).tobytes()).hexdigest()
    save_spec(os.path.join(OUT, "conversions.safetensors"), {
        "f32_in": ("float32", bits.shape, bits.tobytes()),
        "f16_out": ("float16", h.shape, h.tobytes()),
        "bf16_out": ("bfloat16", b.shape, b.tobytes()),
    }, {"f16_to_f32_sha256": sha, "numpy": np.__version__})


# ---- broken files ----

def entry(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


def gen_broken():
    d = os.path.join(OUT, "broken")
    os.makedirs(d, exist_ok=True)
    cases = {}  # file -> substrings the error must contain

    def hdr(name, obj, data=b"", want=(), text=None):
        raw_file(os.path.join(d, name), text if text is not None else json.dumps(obj), data)
        cases[name] = list(want)

    with open(os.path.join(d, "empty.safetensors"), "wb"):
        pass
    cases["empty.safetensors"] = ["file is 0 bytes, too short for the 8-byte header length"]
    with open(os.path.join(d, "truncated_length.safetensors"), "wb") as f:
        f.write(b"\x10\x00\x00")
    cases["truncated_length.safetensors"] = ["too short for the 8-byte header length"]
    raw_file(os.path.join(d, "header_past_end.safetensors"), '{"a": ', hlen=1000)
    cases["header_past_end.safetensors"] = ["header length 1000 runs past the end of the file (6 bytes"]
    raw_file(os.path.join(d, "header_huge.safetensors"), "{}", hlen=1 << 40)
    cases["header_huge.safetensors"] = ["header length 1099511627776 is over the 100000000-byte limit"]
    hdr("bad_json.safetensors", None, text='{"w": {"dtype": "F32",\n  "shape" [2]}}', want=["header:2:11: expected ':'"])
    hdr("truncated_json.safetensors", None, text='{"w": {"dtype": "F32"', want=["header:1:"])
    hdr("not_object.safetensors", None, text="[1, 2]", want=["header is not a JSON object"])
    hdr("trailing_garbage.safetensors", None, text='{} x', want=["header:1:4: extra data"])
    hdr("nul_padding.safetensors", None, text='{}\0\0\0\0\0\0', want=["header:1:3: "])
    hdr("unknown_dtype.safetensors", {"w": entry("F8_E4M3", (2,), (0, 2))}, b"\0\0",
        ["tensor 'w'", "unknown dtype 'F8_E4M3'"])
    hdr("dtype_not_string.safetensors", {"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4,
        ["tensor 'w'", "\"dtype\""])
    hdr("entry_not_object.safetensors", {"w": [1, 2]}, want=["tensor 'w'", "entry is not an object"])
    hdr("missing_shape.safetensors", {"w": {"dtype": "F32", "data_offsets": [0, 4]}}, b"\0" * 4,
        ["tensor 'w'", "\"shape\""])
    hdr("negative_shape.safetensors", {"w": entry("F32", (4, -1), (0, 0))},
        want=["tensor 'w'", "shape dimension 1 is negative (-1)"])
    hdr("float_shape.safetensors", None, text='{"w": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}',
        data=b"\0" * 8, want=["tensor 'w'", "shape dimension 0 is not an integer"])
    hdr("too_many_dims.safetensors", {"w": entry("F32", (1,) * 9, (0, 4))}, b"\0" * 4,
        ["tensor 'w'", "9 dimensions (at most 8"])
    hdr("offsets_three.safetensors", {"w": entry("F32", (2,), (0, 4, 8))}, b"\0" * 8,
        ["tensor 'w'", "two non-negative ints"])
    hdr("offsets_negative.safetensors", {"w": entry("F32", (0,), (-4, 0))}, b"",
        ["tensor 'w'", "two non-negative ints"])
    hdr("offsets_reversed.safetensors", {"w": entry("F32", (2,), (8, 0))}, b"\0" * 8,
        ["tensor 'w'", "data_offsets [8, 0] have begin after end"])
    hdr("offsets_out_of_range.safetensors", {"w": entry("BF16", (4, 8), (0, 100))}, b"\0" * 64,
        ["tensor 'w'", "data_offsets [0, 100] run past the end of the data section (64 bytes)"])
    hdr("size_mismatch.safetensors", {"model.layers.0.mlp.up_proj.weight": entry("BF16", (4, 8), (0, 100))},
        b"\0" * 100,
        ["size_mismatch.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 100] hold 100 "
         "bytes but shape [4, 8] of BF16 needs 64"])
    hdr("shape_overflow.safetensors", {"w": entry("F32", (1 << 31, 1 << 31, 1 << 31), (0, 0))},
        want=["tensor 'w'", "needs more than 2^63"])
    hdr("overlap.safetensors", {"a": entry("F32", (8,), (0, 32)), "b": entry("F32", (8,), (16, 48))}, b"\0" * 48,
        ["tensors 'a' (data_offsets [0, 32]) and 'b' (data_offsets [16, 48]) overlap"])
    hdr("overlap_contained.safetensors", {"big": entry("F32", (8,), (0, 32)), "x": entry("F32", (1,), (40, 44)),
                                          "inner": entry("F32", (2,), (8, 16))}, b"\0" * 48,
        ["tensors 'big'", "'inner'", "overlap"])
    hdr("metadata_not_string.safetensors", {"__metadata__": {"format": "pt", "k": 1}},
        want=["\"__metadata__\" key 'k': value is not a string"])
    hdr("metadata_not_object.safetensors", {"__metadata__": ["pt"]}, want=["\"__metadata__\" is not an object"])
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)

    # The reference reader must reject these too (it is stricter: no gaps).
    for name in cases:
        try:
            with safetensors.safe_open(os.path.join(d, name), framework="numpy") as fh:
                for k in fh.keys():
                    fh.get_slice(k)
            print("NOTE: python safetensors accepts", name)
        except Exception:
            pass


def gen_broken_dirs():
    d = os.path.join(OUT, "broken_dirs")
    shutil.rmtree(d, ignore_errors=True)
    cases = {}
    good = {"w": ("F32", [2], np.array([1, 2], np.float32).tobytes())}

    def mk(name, index_text, shards, want):
        p = os.path.join(d, name)
        os.makedirs(p)
        for fn, t in shards.items():
            if isinstance(t, bytes):
                with open(os.path.join(p, fn), "wb") as f:
                    f.write(t)
            else:
                write_valid(os.path.join(p, fn), t)
        with open(os.path.join(p, "model.safetensors.index.json"), "w") as f:
            f.write(index_text)
        cases[name] = want

    idx = lambda wm: json.dumps({"metadata": {}, "weight_map": wm}, indent=2)
    mk("missing_file", idx({"w": "model-00001-of-00002.safetensors", "v": "model-00002-of-00002.safetensors"}),
       {"model-00001-of-00002.safetensors": good},
       ["model.safetensors.index.json: tensor 'v' is mapped to shard 'model-00002-of-00002.safetensors', "
        "which cannot be loaded", "cannot open"])
    mk("missing_tensor", idx({"w": "a.safetensors", "x": "a.safetensors"}), {"a.safetensors": good},
       ["model.safetensors.index.json: tensor 'x' is mapped to shard 'a.safetensors', which does not contain it"])
    bad = struct.pack("<Q", 2) + b"{]"
    mk("broken_shard", idx({"w": "a.safetensors"}), {"a.safetensors": bad},
       ["model.safetensors.index.json: tensor 'w'", "a.safetensors: header:1:2: "])
    mk("bad_index_json", '{"weight_map": {"w": "a.safetensors",}}', {"a.safetensors": good},
       ["model.safetensors.index.json:1:"])
    mk("no_weight_map", '{"metadata": {}}', {}, ["model.safetensors.index.json: missing or non-object \"weight_map\""])
    mk("shard_not_string", idx({"w": 3}), {}, ["tensor 'w': weight_map value must be a shard file name"])
    mk("shard_escapes", idx({"w": "../a.safetensors"}), {}, ["tensor 'w': weight_map value must be a shard file name"])
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1, sort_keys=True)


def check(paths):
    for p in paths:
        with safetensors.safe_open(p, framework="numpy") as f:
            print(p, "metadata", f.metadata())
            for k in f.keys():
                sl = f.get_slice(k)
                print(" ", k, sl.get_dtype(), sl.get_shape())
        with open(p, "rb") as fh:  # raw bytes: numpy has no bfloat16 to materialize into
            for name, t in safetensors.deserialize(fh.read()):
                raw = np.frombuffer(bytes(t["data"]), dtype=np.uint8)
                dt = SPEC_NAME.get(str(t["dtype"]), str(t["dtype"]))
                if dt == "bfloat16":
                    v = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
                else:
                    v = raw.view(np.dtype(dt))
                print("   ", name, t["dtype"], t["shape"], v[:4].tolist())
    print("ok:", len(paths), "file(s) load with safetensors", safetensors.__version__)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        check(sys.argv[2:])
        return
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    expected = {}
    gen_valid(expected)
    gen_writer_refs()
    gen_conversions()
    gen_broken()
    gen_broken_dirs()
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    total = 0
    for root, _, files in os.walk(OUT):
        for fn in files:
            os.chmod(os.path.join(root, fn), 0o644)  # serialize_file makes 0600 files
            total += os.path.getsize(os.path.join(root, fn))
    print("wrote", OUT, total, "bytes")


if __name__ == "__main__":
    main()
