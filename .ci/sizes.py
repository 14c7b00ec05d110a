#!/usr/bin/env python3
"""Long functions and long files in the Rust tree (issue 42's counts), outside tests.

A function runs from its `fn` line to the first line that closes it at the same indentation
(rustfmt's layout); `#[cfg(test)]` modules and `tests.rs` files are left out.

    python3 .ci/sizes.py [--fn-lines 60] [--file-lines 600]
"""
import argparse
import pathlib
import re

FN = re.compile(r"^(\s*)(pub(\([^)]*\))? )?(const )?(async )?(unsafe )?fn (\w+)")


def functions(path):
    lines = path.read_text().split("\n")
    out, in_tests = [], None
    for i, line in enumerate(lines):
        if in_tests is not None:
            if line.startswith(in_tests + "}"):
                in_tests = None
            continue
        if line.strip() == "#[cfg(test)]" and i + 1 < len(lines) and "mod " in lines[i + 1]:
            in_tests = re.match(r"^(\s*)", lines[i + 1]).group(1)
            continue
        m = FN.match(line)
        if not m or line.rstrip().endswith(";"):
            continue
        close = m.group(1) + "}"
        for j in range(i, len(lines)):
            if lines[j].rstrip() == close or (j == i and line.rstrip().endswith("}")):
                out.append((j - i + 1, f"{path}:{i + 1}", m.group(7)))
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fn-lines", type=int, default=60)
    ap.add_argument("--file-lines", type=int, default=600)
    args = ap.parse_args()
    files = [
        p
        for root in ["src", "contracts", "pipeline", "stages"]
        for p in sorted(pathlib.Path(root).rglob("*.rs"))
        if p.name != "tests.rs" and "tests" not in p.parts
    ]
    long_fns = sorted((f for p in files for f in functions(p) if f[0] > args.fn_lines), reverse=True)
    print(f"functions over {args.fn_lines} lines: {len(long_fns)}")
    for n, at, name in long_fns:
        print(f"  {n:4}  {name}  {at}")
    long_files = sorted(((len(p.read_text().split(chr(10))) - 1, str(p)) for p in files), reverse=True)
    long_files = [f for f in long_files if f[0] > args.file_lines]
    print(f"files over {args.file_lines} lines: {len(long_files)}")
    for n, p in long_files:
        print(f"  {n:4}  {p}")


if __name__ == "__main__":
    main()
