#!/usr/bin/env python3
"""transform.py IN.cu OUT.cpp — the mechanical rewrite that lets g++ compile a
kernel file for the CUDA emulation (tests/cuda_emu/README.md):

  name<<<grid, block[, smem[, stream]]>>>(args);
      -> emu_launch("name", grid, block, smem, stream, name, args);
  extern __shared__ T name[];
      -> T *name = (T *)emu_dynamic_smem();

Everything else is left to emu_device.h (force-included)."""
import re
import sys


def split_top(s):
    """Splits s at the commas outside brackets."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def kernel_name_start(src, end):
    """The start of `ident` or `ident<...>` ending at src[end] (exclusive)."""
    i = end
    while i > 0 and src[i - 1].isspace():
        i -= 1
    if i > 0 and src[i - 1] == ">":  # template arguments
        depth, j = 0, i - 1
        while j >= 0:
            if src[j] == ">":
                depth += 1
            elif src[j] == "<":
                depth -= 1
                if depth == 0:
                    break
            j -= 1
        i = j
    j = i
    while j > 0 and (src[j - 1].isalnum() or src[j - 1] in "_:"):
        j -= 1
    return j


def transform(src, path):
    out, pos = [], 0
    while True:
        k = src.find("<<<", pos)
        if k < 0:
            break
        start = kernel_name_start(src, k)
        name = src[start:k].strip()
        e = src.find(">>>", k)
        cfg = split_top(src[k + 3:e])
        if not 2 <= len(cfg) <= 4:
            sys.exit(f"{path}: cannot parse launch configuration <<<{src[k+3:e]}>>>")
        while len(cfg) < 4:
            cfg.append("0")
        p = e + 3
        while src[p].isspace():
            p += 1
        if src[p] != "(":
            sys.exit(f"{path}: no argument list after the launch of {name}")
        depth, q = 0, p
        while True:
            if src[q] == "(":
                depth += 1
            elif src[q] == ")":
                depth -= 1
                if depth == 0:
                    break
            q += 1
        args = src[p + 1:q].strip()
        bare = re.sub(r"\s+", "", name)
        call = f'emu_launch("{bare}", {cfg[0]}, {cfg[1]}, {cfg[2]}, {cfg[3]}, {name}'
        call += (", " + args if args else "") + ")"
        out.append(src[pos:start])
        out.append(call)
        pos = q + 1
    out.append(src[pos:])
    text = "".join(out)
    text = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([A-Za-z_][\w\s\*]*?)\s*(\w+)\s*\[\s*\]\s*;",
                  r"\1 *\2 = (\1 *)emu_dynamic_smem();", text)
    return text


def main():
    src_path, out_path = sys.argv[1], sys.argv[2]
    with open(src_path) as f:
        src = f.read()
    text = f'#line 1 "{src_path}"\n' + transform(src, src_path)
    with open(out_path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
