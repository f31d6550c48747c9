"""The tensors of a Qwen3 checkpoint, for the fixture scripts of tests/.

Shared by gen_qwen3_fixtures.py and gen_tiny_model.py; imports nothing, so
a script that avoids torch can use it.
"""


def tensor_specs(c):
    """(Hugging Face name, shape) of each tensor of config c, in transformers' order; lm_head only when the
    embeddings are not tied."""
    V, C, I = c["vocab_size"], c["hidden_size"], c["intermediate_size"]
    NH, NKV, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    specs = [("model.embed_tokens.weight", (V, C))]
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        specs += [
            (p + "input_layernorm.weight", (C,)),
            (p + "self_attn.q_proj.weight", (NH * D, C)),
            (p + "self_attn.k_proj.weight", (NKV * D, C)),
            (p + "self_attn.v_proj.weight", (NKV * D, C)),
            (p + "self_attn.q_norm.weight", (D,)),
            (p + "self_attn.k_norm.weight", (D,)),
            (p + "self_attn.o_proj.weight", (C, NH * D)),
            (p + "post_attention_layernorm.weight", (C,)),
            (p + "mlp.gate_proj.weight", (I, C)),
            (p + "mlp.up_proj.weight", (I, C)),
            (p + "mlp.down_proj.weight", (C, I)),
        ]
    specs.append(("model.norm.weight", (C,)))
    if not c["tie_word_embeddings"]:
        specs.append(("lm_head.weight", (V, C)))
    return specs
