"""Count the stacks of /tmp/live.txt (trace_live.py) by their first frames; libtorch_cpu's frames named by gdb.

    python symbolize.py /tmp/live.txt
"""

import collections
import re
import subprocess
import sys
from pathlib import Path

import torch

LIB = str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")


def frames(stack: str) -> list:
    """Offsets into libtorch_cpu (ints) or 'library:symbol' strings, innermost first."""
    out = []
    for frame in stack.split("|"):
        match = re.match(r"(.*?)\((.*?)\) \[", frame)
        if not match:
            continue
        offset = re.search(r"\+0x([0-9a-f]+)\)", frame)
        if "libtorch_cpu" in match.group(1) and offset:
            out.append(int(offset.group(1), 16))
        else:
            out.append(match.group(1).split("/")[-1] + ":" + match.group(2))
    return out


def names(offsets: list[int]) -> dict[int, str]:
    command = ["gdb", "-batch", *[arg for a in offsets for arg in ("-ex", f"info symbol {a:#x}")], LIB]
    lines = [line for line in subprocess.run(command, capture_output=True, text=True).stdout.splitlines()
             if " in section " in line or "No symbol" in line]
    named = {}
    for offset, line in zip(offsets, lines, strict=True):
        name = subprocess.run(["c++filt"], input=line, capture_output=True, text=True).stdout.strip()
        for _ in range(3):  # drop template arguments
            name = re.sub(r"<[^<>]*>", "", name)
        named[offset] = name.split(" + ")[0][:110]
    return named


def main() -> None:
    stacks = collections.Counter(open(sys.argv[1]).read().splitlines())
    parsed = {stack: frames(stack) for stack in stacks}
    named = names(sorted({f for fs in parsed.values() for f in fs if isinstance(f, int)}))
    counts = collections.Counter()
    for stack, count in stacks.items():
        shown = [named.get(f, f) if isinstance(f, int) else f for f in parsed[stack]]
        counts[" <- ".join(str(f) for f in shown[1:6])] += count  # shown[0]: operator new / malloc itself
    for stack, count in counts.most_common(12):
        print(count, stack)


if __name__ == "__main__":
    main()
