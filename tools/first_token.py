#!/usr/bin/env python3
"""Time to the first generated token, whole process (start to exit), of g2w-run builds compared
on a noisy machine: each round runs every binary once, in turn, on the README's 16-token prompt
with `-n 1 --temp 0 -q`, and the wall time of each process is taken with a monotonic clock (ms, not
/usr/bin/time's 10 ms steps). Prints min / median / max per binary. Dev-time only.

    cp .build/release/g2w-run /tmp/g2w-run-old      # before a change; rebuild, then:
    python3 tools/first_token.py 20 tools/out/gpt2-124M-f16.g2w /tmp/g2w-run-old .build/release/g2w-run

A binary given as ENV=VALUE:PATH runs with that environment variable set.
"""
import os
import statistics
import subprocess
import sys
import time

PROMPT = "The quick brown fox jumps over the lazy dog, and then it was a bright"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, model, binaries = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    times = {b: [] for b in binaries}
    for _ in range(rounds):
        for b in binaries:
            env = dict(os.environ)
            path = b
            if "=" in b.split(":", 1)[0] and ":" in b:
                assignment, path = b.split(":", 1)
                k, v = assignment.split("=", 1)
                env[k] = v
            t0 = time.perf_counter()
            r = subprocess.run([path, "--model", model, "--prompt", PROMPT, "-n", "1", "--temp", "0", "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            t1 = time.perf_counter()
            if r.returncode != 0:
                sys.exit(f"{b}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
            times[b].append((t1 - t0) * 1000)
    for b, ts in times.items():
        print(f"{b}: min {min(ts):.1f} ms, median {statistics.median(ts):.1f} ms, max {max(ts):.1f} ms "
              f"({len(ts)} runs; under 100 ms: {sum(t < 100 for t in ts)})")


if __name__ == "__main__":
    main()
