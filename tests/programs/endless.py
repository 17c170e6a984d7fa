"""A program for the signal tests: an endless source; it prints 'ready' once items flow.

With `--stuck`, the sink stops handling items after the first, so draining never ends and only
a second signal can end the run. With `--fuse`, the source, the sink and all between run in one
task (`Plumber(fuse=True)`): a segment in which nothing awaits, which must still let the signal in.
"""

import asyncio
import sys

from pipelines import PipelineCancelled, Plumber, node, run_forever

stuck = "--stuck" in sys.argv
fuse = "--fuse" in sys.argv
seen = 0


@node
async def endless():
    i = 0
    while True:
        yield i
        i += 1


@node
async def sink(item):
    global seen
    seen += 1
    if seen == 100:
        print("ready", flush=True)
    if stuck and seen >= 100:
        await asyncio.Event().wait()


plumber = Plumber(
    {"nodes": {"src": {"coro": endless}, "out": {"coro": sink}}, "graph": {"src": ["out"], "out": None}}, fuse=fuse
)
try:
    result = run_forever(plumber)
except PipelineCancelled as exc:
    print(f"cancelled: {exc}", flush=True)
    sys.exit(3)
put = result["src"].items_out
print(f"{result.state} put={put} seen={seen} all={'yes' if put == seen else 'no'} fused={plumber.fused}", flush=True)
