#!/usr/bin/env python3
"""Fixtures for `tau2_hpc render` and `tau2_hpc tokenize`: a multi-turn τ²-bench-like
conversation with tools, rendered by Hugging Face transformers' apply_chat_template
with the hybrid Qwen3 template (../shared/qwen3-tokenizer) and with the non-thinking
instruct-2507-style template (tests/fixtures/jinja/qwen3_instruct_2507.jinja), and
the ids of the hybrid rendering from Hugging Face tokenizers.

    python3 -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install transformers tokenizers jinja2
    /tmp/hfvenv/bin/python tests/gen_chat_fixtures.py
"""
import json
import os

from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")


def conversation():
    tools = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tau2", "tools_airline.json")))
    tools = [t for t in tools if t["function"]["name"] in ("get_user_details", "get_reservation_details", "calculate")]

    def call(i, name, args):
        return {"type": "function", "id": f"call_{i}", "function": {"name": name, "arguments": args}}

    messages = [
        {"role": "system", "content": "You are a customer service agent. Follow the policy.\n\n# Policy\nBe exact — ünïcödé, 東京, emoji 🛫."},
        {"role": "assistant", "content": "Hi! How can I help you today?"},
        {"role": "user", "content": "I want to check my reservation 4WQ150, user id mia_li_3668."},
        {"role": "assistant", "content": "Let me look that up.",
         "tool_calls": [call(0, "get_user_details", {"user_id": "mia_li_3668"}),
                        call(1, "get_reservation_details", {"reservation_id": "4WQ150"})]},
        {"role": "tool", "tool_call_id": "call_0", "content": json.dumps({"user_id": "mia_li_3668", "membership": "gold", "balance": 120.5})},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"reservation_id\": \"4WQ150\", \"flights\": [], \"insurance\": \"no\"}"},
        {"role": "assistant", "content": "",
         "tool_calls": [call(2, "calculate", "{\"expression\": \"120.5 - 20\"}")]},
        {"role": "tool", "tool_call_id": "call_2", "content": "100.5"},
        {"role": "assistant", "content": "Your reservation 4WQ150 has no flights left; your balance would be 100.5."},
        {"role": "user", "content": "Thanks! ###STOP###"},
    ]
    return {"messages": messages, "tools": tools}


def main():
    conv = conversation()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "conversation.json"), "w") as f:
        json.dump(conv, f, ensure_ascii=False, indent=1)
    tok = AutoTokenizer.from_pretrained(os.path.join(SHARED, "qwen3-tokenizer"))
    instruct = open(os.path.join(ROOT, "tests", "fixtures", "jinja", "qwen3_instruct_2507.jinja")).read()
    cases = {
        "hybrid_gen.txt": dict(add_generation_prompt=True),
        "hybrid_nogen.txt": dict(add_generation_prompt=False),
        "hybrid_nothink_gen.txt": dict(add_generation_prompt=True, enable_thinking=False),
        "instruct_gen.txt": dict(add_generation_prompt=True, chat_template=instruct),
    }
    for name, kw in cases.items():
        text = tok.apply_chat_template(conv["messages"], tools=conv["tools"], tokenize=False, **kw)
        with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    text = open(os.path.join(OUT, "hybrid_gen.txt"), encoding="utf-8", newline="").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with open(os.path.join(OUT, "hybrid_gen_ids.json"), "w") as f:
        json.dump(ids, f)
        f.write("\n")
    print(f"wrote {len(cases)} renderings and {len(ids)} ids to {OUT}")


if __name__ == "__main__":
    main()
