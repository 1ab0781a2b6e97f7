"""Instructions per request, full app against the bare endpoint, counted by valgrind's
callgrind: the same figure whatever else the machine is doing, so that a change of a few
percent in what a request costs can be seen at all (`make bench` on a shared machine moves
by more than that from one round to the next).

    python -m load_test.instructions [--requests 320]

Both apps are built as in `load_test.inprocess` (embedded default, demo models, events
discarded) and called as WSGI apps on one thread; callgrind counts only inside the measured
loop (`--toggle-collect` on the C function that drives it), after a warm-up in which every
uid got its group. Each app runs under valgrind in its own process, both at once: about two
minutes. Needs valgrind (Debian package `valgrind`). What it does not see: the HTTP server,
the kernel, and the cost of cache misses, which grows with the code a request runs through.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The loop runs inside itertools.starmap: callgrind collects while its C function runs.
TOGGLE = "starmap_next"
USERS = 200


def measured_loop(app_name: str, requests: int) -> None:
    """The child: build both apps, warm up, then the counted loop over one of them."""
    from load_test.inprocess import build_apps, call

    with tempfile.TemporaryDirectory(prefix="ml_api_instructions_") as workdir:
        # No catalog reload and no shipper wake-up inside the loop (valgrind runs ~50x slower).
        full, bare = build_apps(Path(workdir), experiment_refresh_seconds=1e9)
        full.extensions["ml_api"].request_events.shipper.wake_seconds = 1e9
        app = full if app_name == "full" else bare
        for i in range(2 * USERS):
            call(app, f"user-{i % USERS}")
        calls = [(app, f"user-{i % USERS}") for i in range(requests)]
        collections.deque(itertools.starmap(call, calls), maxlen=0)


def collected(stderr: str) -> int:
    """The instruction count callgrind reports at exit ('==123== Collected : 4567')."""
    match = re.search(r"Collected\s*:\s*([\d,]+)", stderr)
    if match is None:
        raise RuntimeError(f"no callgrind total in valgrind's output:\n{stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def count(requests: int) -> dict[str, float]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind is needed: apt-get install valgrind")
    with tempfile.TemporaryDirectory(prefix="ml_api_callgrind_") as out:
        children = {
            name: subprocess.Popen(
                [valgrind, "--tool=callgrind", f"--toggle-collect={TOGGLE}",
                 f"--callgrind-out-file={out}/{name}.out", sys.executable, "-m",
                 "load_test.instructions", "--child", name, "--requests", str(requests)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name in ("bare", "full")}
        results = {}
        for name, child in children.items():
            _, stderr = child.communicate()
            if child.returncode:
                raise RuntimeError(f"{name} failed under valgrind:\n{stderr[-2000:]}")
            results[name] = collected(stderr) / requests
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--child", choices=("bare", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measured_loop(args.child, args.requests)
        return 0
    per_request = count(args.requests)
    bare, full = per_request["bare"], per_request["full"]
    print(f"instructions per request ({args.requests} requests, callgrind): bare {bare:,.0f}, "
          f"full {full:,.0f}, full adds {full - bare:,.0f} ({full / bare:.3f}x the bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
