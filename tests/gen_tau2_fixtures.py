#!/usr/bin/env python3
"""Generate reference fixtures for tau2_hpc from the real tau2-bench (Python).

The C implementation is checked against these files, so they must come from
tau2-bench itself, never from our own code. Nothing from tau2-bench is copied
into this repository; the script imports it from a separate checkout.

Regenerate:

    # 1. Get the tau2-bench sources (any checkout; only src/ is needed).
    git --git-dir=/path/to/tau2-bench.git archive HEAD src pyproject.toml \
        | tar -x -C /tmp/tau2pkg
    # 2. A Python (3.11+) environment with the few modules the imported
    #    parts need:
    python3 -m venv /tmp/tau2venv --system-site-packages
    /tmp/tau2venv/bin/pip install pydantic loguru toml addict deepdiff \
        docstring_parser python-dotenv pyyaml pandas numpy
    # 3. Run (data dir may hold either domains/ or tau2/domains/):
    /tmp/tau2venv/bin/python tests/gen_tau2_fixtures.py \
        --tau2-src /tmp/tau2pkg/src --data-dir /work/shared/tau2-data \
        --out tests/fixtures/tau2

The heavy LLM stack (litellm, httpx) is never imported: the tau2 package
__init__ (which pulls in agents and runners) is bypassed and
tau2.utils.llm_utils is replaced by a stub that raises if called. No LLM is
needed because NL_ASSERTION is dropped from the reward basis (and recorded).

Outputs (see tests/fixtures/tau2/README.md):
  tools_<domain>.json        openai_schema of env.get_tools(), in order
  tools_<domain>_user.json   same for env.get_user_tools() (telecom, mock)
  gold_<domain>.jsonl        gold actions replayed live, env assertions, hashes
  reward_<domain>.jsonl      evaluate_simulation() on an oracle trajectory
"""

import argparse
import copy
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

DOMAINS = ["airline", "retail", "telecom", "mock"]
USER_TOOL_DOMAINS = {"telecom", "mock"}


def resolve_data_dir(data_dir):
    """tau2-bench expects $TAU2_DATA_DIR/tau2/domains; accept both layouts."""
    d = Path(data_dir).resolve()
    if (d / "tau2" / "domains").is_dir():
        return str(d)
    if (d / "domains").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix="tau2data-"))
        (tmp / "tau2").symlink_to(d)
        return str(tmp)
    sys.exit(f"no domains/ or tau2/domains/ under {data_dir}")


def bootstrap_tau2(src_dir, data_dir):
    """Import tau2 submodules without running tau2/__init__.py."""
    os.environ["TAU2_DATA_DIR"] = resolve_data_dir(data_dir)
    pkg_dir = Path(src_dir).resolve() / "tau2"
    if not (pkg_dir / "environment" / "environment.py").is_file():
        sys.exit(f"{src_dir} does not look like tau2-bench's src/ directory")
    pkg = types.ModuleType("tau2")
    pkg.__path__ = [str(pkg_dir)]
    sys.modules["tau2"] = pkg

    stub = types.ModuleType("tau2.utils.llm_utils")

    def no_llm(*args, **kwargs):
        raise RuntimeError("LLM calls are disabled during fixture generation")

    stub.__getattr__ = lambda name: no_llm
    sys.modules["tau2.utils.llm_utils"] = stub

    from loguru import logger

    logger.remove()


def dump_tools(env, domain, out):
    tools = [t.openai_schema for t in env.get_tools()]
    (out / f"tools_{domain}.json").write_text(json.dumps(tools, indent=2) + "\n")
    counts = {"agent_tools": len(tools)}
    if domain in USER_TOOL_DOMAINS:
        user_tools = [t.openai_schema for t in env.get_user_tools()]
        (out / f"tools_{domain}_user.json").write_text(
            json.dumps(user_tools, indent=2) + "\n"
        )
        counts["user_tools"] = len(user_tools)
    return counts


def initial_state_parts(task):
    st = task.initial_state
    if st is None:
        return None, None, []
    return (
        st.initialization_data,
        st.initialization_actions,
        list(st.message_history or []),
    )


def fresh_env(constructor, task):
    init_data, init_actions, history = initial_state_parts(task)
    env = constructor()
    env.set_state(
        initialization_data=init_data,
        initialization_actions=init_actions,
        message_history=copy.deepcopy(history),
    )
    return env


def run_live(constructor, task):
    """Gold actions as a live episode runs them: get_response (with sync)."""
    from tau2.data_model.message import ToolCall

    env = fresh_env(constructor, task)
    ec = task.evaluation_criteria
    actions = (ec.actions if ec is not None else None) or []
    steps, calls = [], []
    for i, a in enumerate(actions):
        tc = ToolCall(
            id=f"gold_{i}",
            name=a.name,
            arguments=copy.deepcopy(a.arguments),
            requestor=a.requestor,
        )
        tm = env.get_response(tc)
        calls.append((tc, tm))
        steps.append(
            {
                "requestor": a.requestor,
                "name": a.name,
                "arguments": a.arguments,
                "content": tm.content,
                "error": tm.error,
            }
        )
    assertions = []
    for ea in (ec.env_assertions if ec is not None else None) or []:
        try:
            assertions.append(env.run_env_assertion(ea, raise_assertion_error=False))
        except Exception as e:  # non-bool result or unknown function
            assertions.append(None)
            print(f"  {task.id}: env assertion raised: {e}", file=sys.stderr)
    return env, steps, calls, assertions


def run_gold_eval(constructor, task):
    """Gold env as EnvironmentEvaluator builds it: make_tool_call, no sync."""
    env = fresh_env(constructor, task)
    ec = task.evaluation_criteria
    for a in (ec.actions if ec is not None else None) or []:
        try:
            env.make_tool_call(
                tool_name=a.name, requestor=a.requestor, **copy.deepcopy(a.arguments)
            )
        except Exception:
            pass
    return env.get_db_hash(), env.get_user_db_hash()


def oracle_messages(task, calls):
    from tau2.data_model.message import AssistantMessage, UserMessage

    _, _, history = initial_state_parts(task)
    msgs = copy.deepcopy(history)
    for tc, tm in calls:
        if tc.requestor == "user":
            msgs.append(UserMessage(role="user", content=None, tool_calls=[tc]))
        else:
            msgs.append(
                AssistantMessage(role="assistant", content=None, tool_calls=[tc])
            )
        msgs.append(tm)
    ec = task.evaluation_criteria
    info = (ec.communicate_info if ec is not None else None) or []
    text = " ".join(info) if info else "Done."
    msgs.append(AssistantMessage(role="assistant", content=text))
    return msgs


def evaluate_oracle(domain, task, calls):
    from tau2.data_model.simulation import SimulationRun, TerminationReason
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    eval_task = task.model_copy(deep=True)
    nl_dropped = False
    ec = eval_task.evaluation_criteria
    if ec is not None and RewardType.NL_ASSERTION in ec.reward_basis:
        ec.reward_basis = [r for r in ec.reward_basis if r != RewardType.NL_ASSERTION]
        nl_dropped = True
    now = "2025-01-01T00:00:00"
    sim = SimulationRun(
        id=f"oracle-{task.id}",
        task_id=task.id,
        timestamp=now,
        start_time=now,
        end_time=now,
        duration=0.0,
        termination_reason=TerminationReason.USER_STOP,
        messages=oracle_messages(task, calls),
    )
    ri = evaluate_simulation(
        simulation=sim,
        task=eval_task,
        evaluation_type=EvaluationType.ALL,
        solo_mode=False,
        domain=domain,
    )
    rec = {
        "task_id": task.id,
        "reward": ri.reward,
        "reward_breakdown": (
            {k.value if hasattr(k, "value") else str(k): v
             for k, v in ri.reward_breakdown.items()}
            if ri.reward_breakdown is not None
            else None
        ),
        "db_match": ri.db_check.db_match if ri.db_check is not None else None,
        "env_assertion_checks": [c.met for c in ri.env_assertions or []],
        "action_checks": [c.action_match for c in ri.action_checks or []],
        "communicate_checks": [c.met for c in ri.communicate_checks or []],
    }
    if nl_dropped:
        rec["nl_dropped"] = True
    return rec


def load_tasks(data_root, domain):
    from tau2.data_model.tasks import Task

    path = data_root / "tau2" / "domains" / domain / "tasks.json"
    raw = json.loads(path.read_text())
    if isinstance(raw, dict) and "tasks" in raw:
        raw = raw["tasks"]
    return [Task.model_validate(t) for t in raw]


def content_task_ids(data_root, domain, splits):
    """Telecom keeps tool output text only for the named splits (size)."""
    if domain != "telecom":
        return None
    path = data_root / "tau2" / "domains" / domain / "split_tasks.json"
    split = json.loads(path.read_text())
    keep = set()
    for s in splits:
        keep.update(split.get(s, []))
    return keep


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def gen_domain(domain, out, data_root, telecom_splits, summary):
    from tau2.registry import registry

    t0 = time.time()
    constructor = registry.get_env_constructor(domain)
    counts = dump_tools(constructor(), domain, out)
    tasks = load_tasks(data_root, domain)
    keep_content = content_task_ids(data_root, domain, telecom_splits)
    problems = []
    rewards = {}
    nl_dropped = 0
    with open(out / f"gold_{domain}.jsonl", "w") as gold_f, open(
        out / f"reward_{domain}.jsonl", "w"
    ) as rew_f:
        for task in tasks:
            env, steps, calls, assertions = run_live(constructor, task)
            gold_hash, gold_user_hash = run_gold_eval(constructor, task)
            for i, s in enumerate(steps):
                if s["error"]:
                    problems.append(f"{task.id}: gold action {i} {s['name']} "
                                    f"errored: {s['content'][:160]}")
            for i, ok in enumerate(assertions):
                if ok is not True:
                    problems.append(f"{task.id}: env assertion {i} -> {ok}")
            if keep_content is not None and task.id not in keep_content:
                for s in steps:
                    del s["content"]
            gold_f.write(compact({
                "task_id": task.id,
                "steps": steps,
                "env_assertions": assertions,
                "db_hash": env.get_db_hash(),
                "user_db_hash": env.get_user_db_hash(),
                "gold_db_hash": gold_hash,
                "gold_user_db_hash": gold_user_hash,
            }) + "\n")
            rec = evaluate_oracle(domain, task, calls)
            rew_f.write(compact(rec) + "\n")
            rewards[rec["reward"]] = rewards.get(rec["reward"], 0) + 1
            nl_dropped += bool(rec.get("nl_dropped"))
            if rec["reward"] != 1.0:
                problems.append(f"{task.id}: oracle reward {rec['reward']} "
                                f"breakdown={rec['reward_breakdown']} "
                                f"comm={rec['communicate_checks']}")
    summary[domain] = {
        **counts,
        "tasks": len(tasks),
        "rewards": {str(k): v for k, v in sorted(rewards.items())},
        "nl_dropped": nl_dropped,
        "problems": problems,
        "seconds": round(time.time() - t0, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tau2-src", required=True,
                    help="tau2-bench src/ directory (contains tau2/)")
    ap.add_argument("--data-dir", required=True,
                    help="data dir holding domains/ (or tau2/domains/)")
    ap.add_argument("--out", default="tests/fixtures/tau2")
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--telecom-content-splits", default="base,small",
                    help="telecom splits whose steps keep tool output text")
    args = ap.parse_args()

    bootstrap_tau2(args.tau2_src, args.data_dir)
    data_root = Path(os.environ["TAU2_DATA_DIR"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for domain in args.domains.split(","):
        gen_domain(domain, out, data_root,
                   args.telecom_content_splits.split(","), summary)
        s = summary[domain]
        print(f"{domain}: {s['tasks']} tasks, rewards {s['rewards']}, "
              f"nl_dropped {s['nl_dropped']}, {len(s['problems'])} problems, "
              f"{s['seconds']}s", file=sys.stderr)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
