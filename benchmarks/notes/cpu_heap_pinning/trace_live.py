"""Which allocations made during CPU phase 1 are still alive later: what pins freed activation memory.

    gcc -O2 -shared -fPIC -o /tmp/live_allocations.so live_allocations.c
    LD_PRELOAD=/tmp/live_allocations.so python trace_live.py --record 0:9 --dump 25 -- \
        ../../heap_trace.py --classes 5 --shots 64 --steps 30
    python symbolize.py /tmp/live.txt

Records every malloc/calloc/realloc/memalign between the ends of steps A and B (0: from the start of
training) with its call stack, forgets those freed, and at the end of step `--dump` writes the stacks of
the ones still alive to /tmp/live.txt. `symbolize.py` names libtorch_cpu's frames (gdb) and counts them.
"""

import argparse
import ctypes
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import setfit_core.heap as heap  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--record", default="10:20", help="A:B, steps whose allocations are recorded")
parser.add_argument("--dump", type=int, default=25)
parser.add_argument("script", nargs=argparse.REMAINDER)
args = parser.parse_args()
first, last = (int(x) for x in args.record.split(":"))
tracer = ctypes.CDLL(None)  # the LD_PRELOADed library's symbols are global
tracer.mt_set.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t]
steps = [0]
after_step, init = heap.HeapReleaser.after_step, heap.HeapReleaser.__init__


def traced_init(self, *a, **k):
    init(self, *a, **k)
    if first == 0:
        tracer.mt_set(1, 1, 1 << 40)


def traced_step(self):
    steps[0] += 1
    if steps[0] == first:
        tracer.mt_set(1, 1, 1 << 40)
    if steps[0] == last:
        tracer.mt_set(0, 1, 1 << 40)
    if steps[0] == args.dump:
        print("allocations still alive:", tracer.mt_dump(b"/tmp/live.txt"), file=sys.stderr)
    after_step(self)


heap.HeapReleaser.__init__, heap.HeapReleaser.after_step = traced_init, traced_step
script = [a for a in args.script if a != "--"]
sys.argv = script
runpy.run_path(script[0], run_name="__main__")
