#!/usr/bin/env python3
"""Run the CTF 1.8 conformance suite (a checkout of efficios/ctf-testsuite, not part of this
repository and not needed by CI) through `faultline view` and `babeltrace2`, side by side.

usage: scripts/ctf-testsuite.py SUITE_CHECKOUT [FAULTLINE_BINARY] [--stress]

Prints, per reader: valid traces read (exit 0), invalid traces rejected (a clean error exit),
crashes (death by a signal, or no answer within the time limit); and, for the valid traces
both read, how many print the same events (timestamps in clock cycles, names, field values).
--stress also runs the smallest size of each generated stress test (needs the suite's Python
helpers; slow).
"""
import glob
import os
import re
import subprocess
import sys

TIMEOUT = 20


def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired:
        return None, b""


def verdict(rc, clean_errors):
    if rc == 0:
        return "read"
    if rc is None or rc < 0 or rc >= 128 or rc not in clean_errors:
        return "crash"
    return "rejected"


def norm_babeltrace(out):
    lines = []
    for l in out.decode(errors="replace").splitlines():
        m = re.match(r"(?:\[(\d+)\] )?(?:\S+ )?(\S+): (\{ cpu_id = \d+ \}, )?(.*)$", l)
        lines.append("%d %s: %s" % (int(m.group(1) or 0), m.group(2), m.group(4)) if m else "?" + l)
    return lines


def norm_faultline(out):
    lines = []
    for l in out.decode(errors="replace").splitlines():
        m = re.match(r"\[(\d+)\] cpu \d+ (\S+): (.*)$", l)
        lines.append("%d %s: %s" % (int(m.group(1)), m.group(2), m.group(3)) if m else "?" + l)
    return lines


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    suite = os.path.join(args[0], "tests", "1.8")
    fl = args[1] if len(args) > 1 else "target/release/faultline"
    cases = []
    for kind in ("pass", "fail"):
        for d in sorted(glob.glob(os.path.join(suite, "regression", "*", kind, "*", ""))):
            cases.append((kind, d))
    counts = {r: {"read": 0, "rejected": 0, "crash": 0} for r in ("faultline", "babeltrace2")}
    wrong = {r: [] for r in counts}
    same = differ = 0
    for kind, d in cases:
        frc, fout = run([fl, "view", "--time", "raw", d])
        brc, bout = run(["babeltrace2", "--clock-cycles", "--no-delta", d])
        for r, rc, clean in (("faultline", frc, (2,)), ("babeltrace2", brc, (1,))):
            v = verdict(rc, clean)
            if v == "crash":
                counts[r]["crash"] += 1
                wrong[r].append("crash " + d)
            elif (v == "read") == (kind == "pass"):
                counts[r][v] += 1
            else:
                wrong[r].append(("read invalid " if v == "read" else "rejected valid ") + d)
        if kind == "pass" and frc == 0 and brc == 0:
            if norm_faultline(fout) == norm_babeltrace(bout):
                same += 1
            else:
                differ += 1
                wrong["faultline"].append("output differs from babeltrace2 " + d)
    n_pass = sum(1 for k, _ in cases if k == "pass")
    n_fail = len(cases) - n_pass
    print("regression: %d valid, %d invalid traces" % (n_pass, n_fail))
    for r, c in counts.items():
        print("%-12s valid read %3d/%d   invalid rejected %3d/%d   crashes %d"
              % (r, c["read"], n_pass, c["rejected"], n_fail, c["crash"]))
    print("same events as babeltrace2 (where both read): %d, different: %d" % (same, differ))
    for r, w in wrong.items():
        for x in w:
            print("  %s: %s" % (r, x))
    if "--stress" in sys.argv:
        env = dict(os.environ, PYTHONPATH=os.path.join(args[0], "utils", "python"))
        for t in sorted(glob.glob(os.path.join(suite, "stress", "*", "pass", "*", ""))):
            p = open(os.path.join(t, "param-list.txt")).read().split()[0]
            subprocess.run(["./test.py", "prepare", p], cwd=t, env=env, capture_output=True)
            d = os.path.join(t, "trace-" + p)
            res = []
            for r, cmd, clean in (("faultline", [fl, "view", d], (2,)),
                                  ("babeltrace2", ["babeltrace2", d], (1,))):
                try:
                    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        timeout=60).returncode
                except subprocess.TimeoutExpired:
                    rc = None
                res.append("%s %s" % (r, verdict(rc, clean) if rc is not None else "timeout"))
            subprocess.run(["./test.py", "clean", p], cwd=t, env=env, capture_output=True)
            print("stress %-32s %-10s %s" % (os.path.basename(t.rstrip("/")), p, ", ".join(res)))


main()
