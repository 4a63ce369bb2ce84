"""Summarise py-spy raw stacks (``--profile x.txt``): top functions by self and by inclusive samples.

    python -m bench.stacks bench/results/profile-poll.txt [--top 30] [--grep chat/]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r" \(([^)]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: one entry per function, not per line."""
    m = _LINE.search(frame)
    if not m:
        return frame
    return f"{frame[:m.start()]} ({m.group(1).rsplit('/', 2)[-1] if '/' in m.group(1) else m.group(1)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stacks", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--grep", default="", help="only functions whose frame contains this")
    args = parser.parse_args(argv)
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in args.stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_name(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    print(f"{total} samples")
    for title, counter in (("self", own), ("inclusive", incl)):
        print(f"\n-- top by {title} --")
        shown = 0
        for name, n in counter.most_common():
            if args.grep in name:
                print(f"{n / total:6.1%}  {name}")
                shown += 1
                if shown == args.top:
                    break


if __name__ == "__main__":
    main()
