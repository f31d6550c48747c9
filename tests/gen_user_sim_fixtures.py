#!/usr/bin/env python3
"""Generate the user-simulator and NL-judge fixtures from tau2-bench's own code.

test_user_sim.c compares src/llm/user_sim.c and src/llm/judge.c with these
files byte for byte, so every expected text here is produced by tau2-bench
(imported from a separate checkout, never copied into this repository):

  system prompt   tau2.user.user_simulator.UserSimulator.system_prompt with
                  instructions=str(task.user_scenario) (what the runner's
                  build_user passes), guideline paths pointed at --data-dir
  flipped history tau2.user.user_simulator_base.is_valid_user_history_message,
                  UserState.flip_roles and tau2.utils.llm_utils.
                  to_litellm_messages
  judge request   tau2.evaluator.evaluator_nl_assertions.NLAssertionsEvaluator
                  .evaluate_nl_assertions with its `generate` replaced by a
                  recorder that answers a canned reply; the recorded messages
                  go through to_litellm_messages, the checks it returns are
                  the expected verdicts

Regenerate:

    git --git-dir=/path/to/tau2-bench.git archive HEAD src pyproject.toml \
        | tar -x -C /tmp/tau2pkg
    python3 -m venv /tmp/tau2venv
    /tmp/tau2venv/bin/pip install pydantic loguru toml addict PyYAML \
        docstring-parser deepdiff tenacity python-dotenv rich tabulate httpx \
        requests typer psutil numpy pandas
    /tmp/tau2venv/bin/python tests/gen_user_sim_fixtures.py \
        --tau2-src /tmp/tau2pkg/src --data-dir /work/shared/tau2-data \
        --out tests/fixtures/user_sim

tau2-bench's package needs Python 3.12 and litellm to install; neither is
needed for these pure functions. The tau2 package __init__ (agents, runners)
is bypassed, and litellm is replaced by an empty module whose names are inert
placeholders: nothing here calls a model.

Normalization, the one place the C output differs from litellm's dict on
purpose: to_litellm_messages gives assistant messages "tool_calls": None when
there are none and each tool call an extra top-level "name"; the C request
leaves both out (OpenAI's form: "tool_calls" absent, {"id", "type",
"function"}). The generator applies exactly that change to tau2-bench's
output and nothing else.
"""

import argparse
import json
import os
import sys
import types


def import_tau2(src):
    sys.path.insert(0, src)
    pkg = types.ModuleType("tau2")
    pkg.__path__ = [os.path.join(src, "tau2")]
    sys.modules["tau2"] = pkg

    class Inert:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            raise RuntimeError("no model calls in fixture generation")

    for name in ["litellm", "litellm.caching", "litellm.caching.caching", "litellm.main"]:
        m = types.ModuleType(name)
        m.__getattr__ = lambda n: Inert
        sys.modules[name] = m
    from loguru import logger

    logger.remove()


# Synthetic scenarios for the corners of str(UserScenario) that the data
# has few of: textwrap.indent skips whitespace-only lines, \r\n and other
# line breaks, trailing newlines, null optional fields, non-ASCII text.
SYNTHETIC_TASKS = [
    {
        "id": "synthetic_structured",
        "user_scenario": {
            "persona": "Terse.\n\n  \nLikes lists:\r\n- one\u2028- two\n",
            "instructions": {
                "domain": "retail",
                "reason_for_call": "Return a caf\u00e9 grinder \U0001f600.\n\tBlank next:\n \t\nDone.",
                "known_info": None,
                "unknown_info": "Order id\x0bmaybe\x85here",
                "task_instructions": "Say ###STOP### at the end.\n",
            },
        },
    },
    {
        "id": "synthetic_string",
        "user_scenario": {"persona": None, "instructions": "Line one\n\nLine three\u00a0\n\u3000\nend"},
    },
    {
        "id": "synthetic_known_only",
        "user_scenario": {
            "instructions": {
                "domain": "airline",
                "reason_for_call": "",
                "known_info": "You are Ana.",
                "task_instructions": "x",
            }
        },
    },
]

# Real tasks: (domain, tasks file, ids, has_tools). has_tools is what the
# runner derives from the domain: telecom and mock have a user toolkit.
REAL_TASKS = [
    ("airline", "tasks.json", ["0", "23"], False),
    ("retail", "tasks.json", ["2", "16"], False),
    (
        "telecom",
        "tasks_small.json",
        ["[mobile_data_issue]user_abroad_roaming_enabled_off[PERSONA:None]",
         "[mobile_data_issue]user_abroad_roaming_disabled_on[PERSONA:Easy]"],
        True,
    ),
    ("mock", "tasks.json", ["create_task_1", "update_task_with_user_tools"], True),
]


def system_prompt(task_json, has_tools, data_dir):
    from tau2.data_model.tasks import Task
    import tau2.user.user_simulator as us

    us.GLOBAL_USER_SIM_GUIDELINES_PATH = os.path.join(data_dir, "user_simulator", "simulation_guidelines.md")
    us.GLOBAL_USER_SIM_GUIDELINES_PATH_TOOLS = os.path.join(
        data_dir, "user_simulator", "simulation_guidelines_tools.md"
    )
    task = Task.model_validate(task_json)
    user = us.UserSimulator(llm="none", instructions=str(task.user_scenario), tools=[] if has_tools else None)
    return user.system_prompt


def to_messages(raw):
    from tau2.data_model.message import AssistantMessage, ToolMessage, UserMessage

    cls = {"assistant": AssistantMessage, "user": UserMessage, "tool": ToolMessage}
    return [cls[m["role"]].model_validate(m) for m in raw]


def normalize(litellm_messages):
    out = []
    for m in litellm_messages:
        m = dict(m)
        if "tool_calls" in m and m["tool_calls"] is None:
            del m["tool_calls"]
        if m.get("tool_calls") is not None:
            m["tool_calls"] = [{"id": tc["id"], "type": tc["type"], "function": tc["function"]} for tc in m["tool_calls"]]
        out.append(m)
    return out


def flipped(system, raw):
    from tau2.data_model.message import SystemMessage
    from tau2.user.user_simulator_base import UserState, is_valid_user_history_message
    from tau2.utils.llm_utils import to_litellm_messages

    msgs = [m for m in to_messages(raw) if is_valid_user_history_message(m)]
    state = UserState(system_messages=[SystemMessage(role="system", content=system)], messages=msgs)
    return normalize(to_litellm_messages(state.system_messages + state.flip_roles()))


def judge(raw, assertions, reply):
    import tau2.evaluator.evaluator_nl_assertions as ev
    from tau2.data_model.message import AssistantMessage
    from tau2.utils.llm_utils import to_litellm_messages

    seen = {}

    def fake_generate(model, messages, **kwargs):
        seen["messages"] = messages
        return AssistantMessage(role="assistant", content=reply)

    ev.generate = fake_generate
    checks = ev.NLAssertionsEvaluator.evaluate_nl_assertions(to_messages(raw), assertions)
    return normalize(to_litellm_messages(seen["messages"])), [c.model_dump() for c in checks]


def call(cid, name, args, requestor):
    return {"id": cid, "name": name, "arguments": args, "requestor": requestor}


def tool(cid, content, requestor, error=False):
    return {"role": "tool", "id": cid, "content": content, "requestor": requestor, "error": error}


# A mock-domain episode in the form the C Episode stores (episode_submit):
# the agent's tool calls and their results, a user tool call with its
# result, a user turn with text and a call together, an agent turn with text
# and a call (hidden from the user as a whole), non-ASCII and float arguments.
TRAJECTORY = [
    {"role": "assistant", "content": "Hi! How can I help you today?", "tool_calls": None},
    {"role": "user", "content": "I'd like to mark my task done. My id is user_1.", "tool_calls": None},
    {"role": "assistant", "content": None,
     "tool_calls": [call("call_0", "get_users", {}, "assistant")]},
    tool("call_0", "{\"user_1\": {\"name\": \"Ana\"}}", "assistant"),
    {"role": "assistant", "content": "Thanks Ana. Please check your notifications first.", "tool_calls": None},
    {"role": "user", "content": None,
     "tool_calls": [call("call_1", "check_notifications", {}, "user")]},
    tool("call_1", "[{\"id\": \"n1\", \"text\": \"Caf\u00e9 \u2615 reminder\"}]", "user"),
    {"role": "user", "content": "Dismissing the caf\u00e9 one.",
     "tool_calls": [call("call_2", "dismiss_notification",
                         {"notification_id": "n1", "note": "d\u00e9j\u00e0 \"vu\"", "weight": 1.0,
                          "count": 3, "tags": ["a", None, True]}, "user")]},
    tool("call_2", "Error: notification n1 is already read", "user", True),
    {"role": "user", "content": "Done. Which task was it?", "tool_calls": None},
    {"role": "assistant", "content": "Let me update it.",
     "tool_calls": [call("call_3", "update_task_status", {"task_id": "task_1", "status": "completed"}, "assistant")]},
    tool("call_3", "{\"task_id\": \"task_1\", \"status\": \"completed\"}", "assistant"),
    {"role": "assistant", "content": "Task task_1 is now completed.", "tool_calls": None},
    {"role": "user", "content": "Great, thanks! ###STOP###", "tool_calls": None},
]

ASSERTIONS = [
    "Agent marks task_1 as 'completed'.",
    "Agent says \"done\" \u2014 politely\nand\tclearly \\ once",
    "caf\u00e9 \u00a0nbsp \u200b zwsp \x7f del \U0001f600 emoji",
    "plain",
]

JUDGE_REPLY = json.dumps({"results": [
    {"expectedOutcome": ASSERTIONS[0], "reasoning": "It called update_task_status.", "metExpectation": True},
    {"expectedOutcome": ASSERTIONS[1], "reasoning": "Not \u201cpolite\u201d.", "metExpectation": False},
    {"expectedOutcome": ASSERTIONS[2], "reasoning": "n/a", "metExpectation": True},
    {"expectedOutcome": ASSERTIONS[3], "reasoning": "", "metExpectation": True},
]}, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tau2-src", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    import_tau2(a.tau2_src)
    os.makedirs(a.out, exist_ok=True)

    prompts = []
    for domain, fname, ids, has_tools in REAL_TASKS:
        with open(os.path.join(a.data_dir, "domains", domain, fname)) as f:
            tasks = {t["id"]: t for t in json.load(f)}
        for tid in ids:
            prompts.append({"domain": domain, "tasks_file": fname, "task_id": tid, "has_tools": has_tools,
                            "prompt": system_prompt(tasks[tid], has_tools, a.data_dir)})
    for t in SYNTHETIC_TASKS:
        for has_tools in (False, True):
            prompts.append({"task": t, "has_tools": has_tools, "prompt": system_prompt(t, has_tools, a.data_dir)})

    with open(os.path.join(a.data_dir, "domains", "mock", "tasks.json")) as f:
        mock = {t["id"]: t for t in json.load(f)}
    history = mock["update_task_with_message_history"]["initial_state"]["message_history"]
    flips = []
    for name, raw in [("episode", TRAJECTORY), ("mock_history", history)]:
        flips.append({"name": name, "system_prompt": "You are the customer.", "messages": raw,
                      "expected": json.dumps(flipped("You are the customer.", raw))})

    judges = []
    for name, raw, assertions in [("episode", TRAJECTORY, ASSERTIONS),
                                  ("mock_history", history, mock["create_task_1_nl_eval"]
                                   ["evaluation_criteria"]["nl_assertions"])]:
        reply = JUDGE_REPLY if name == "episode" else json.dumps(
            {"results": [{"expectedOutcome": s, "reasoning": "r", "metExpectation": False} for s in assertions]})
        msgs, checks = judge(raw, assertions, reply)
        judges.append({"name": name, "messages": raw, "nl_assertions": assertions, "expected": json.dumps(msgs),
                       "reply": reply, "checks": json.dumps(checks)})

    for fname, data in [("system_prompts.json", prompts), ("flip.json", flips), ("judge.json", judges)]:
        with open(os.path.join(a.out, fname), "w") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
