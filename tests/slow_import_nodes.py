"""A module whose import takes long: the CLI test interrupts the command while it imports this."""

import sys
import time

print("importing", file=sys.stderr, flush=True)
time.sleep(120)
