#!/usr/bin/env python3
"""Runs the jsonbus benchmarks (bench/driver against every contender), interleaved round by
round, and writes bench/results/latest.md, raw.jsonl and chart.png.  Called by bench/run."""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# BENCH_BUILD / BENCH_RESULTS: other directories (bench/run passes BENCH_BUILD through), e.g.
# for a trial run that must not touch bench/build or bench/results
BUILD = os.environ.get("BENCH_BUILD") or os.path.join(HERE, "build")
RESULTS = os.environ.get("BENCH_RESULTS") or os.path.join(HERE, "results")
DRIVER = os.path.join(BUILD, "driver")

SIZES = [64, 200, 4096, 65536]
PUBS = [1, 2, 4]
SUBS = [1, 8]
RATES = [10000, 20000, 100000]

MODES = {
    "quick": dict(
        rounds=3,
        tput_n={64: 40000, 200: 40000, 4096: 6000, 65536: 400},
        lat_seconds=0.5,
        burst_n=200000,
        burst_rounds=1,
        fanout_n=50000,
        broadcast_n={8: 40000, 1000: 400},
        pull_n=50000,
        limited_n=50000,
        request_n={1: 20000, 8: 2500},
        timers_n={1000: 1000, 100000: 50000},
        cg_n=4000,
    ),
    "full": dict(
        rounds=5,
        tput_n={64: 300000, 200: 300000, 4096: 40000, 65536: 3000},
        lat_seconds=2.0,
        burst_n=1000000,
        burst_rounds=3,
        fanout_n=200000,
        broadcast_n={8: 200000, 1000: 2000},
        pull_n=300000,
        limited_n=300000,
        request_n={1: 100000, 8: 12500},
        timers_n={1000: 5000, 100000: 200000},
        cg_n=15000,
    ),
}
BURST_SPIN_NS = 2000
FANOUT_OTHERS = [0, 10000]
BROADCAST_SUBS = [8, 1000]
PULL_MODES = ["wait", "poll"]
LIMITED_MODES = ["none", "block", "drop_new"]
QUEUE_LIMIT = 1024
REQUESTERS = [1, 8]  # request: requester threads; request_n = round trips per requester
REQUEST_SIZE = 200
TIMER_RATES = [1000, 100000]  # timers armed per second; timers_n = how many
TIMER_MAX_DELAY_MS = 50  # each timer's delay: uniform in 1..this
PHASES = ["tput", "lat", "burst", "fanout", "broadcast", "pull", "limited", "request", "timers", "callgrind"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"({e})"


class Contender:
    # tput_only: measured in the throughput phase only (a second, labelled row of a peer)
    def __init__(self, name, lib, env=None, tput_only=False):
        self.name, self.lib, self.env, self.tput_only = name, lib, env or {}, tput_only

    def environ(self, extra=None):
        e = dict(os.environ)
        e.pop("JSONBUS_DEFAULT_OPTIONS", None)
        e.update(self.env)
        if extra:
            e.update(extra)
        return e


def run_driver(c, args, timeout, prefix=None, extra_env=None):
    cmd = (prefix or []) + [DRIVER, c.lib] + [str(a) for a in args]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=c.environ(extra_env))
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s", "cmd": " ".join(cmd)}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-400:]}", "cmd": " ".join(cmd)}
    r = json.loads(lines[-1])
    r["wall"] = round(time.time() - t0, 3)
    if r.get("ok") is False:
        bits = [f"{k}={r[k]}" for k in ("errors", "mismatched", "early", "received", "reply_errors", "first_error")
                if r.get(k) and not (k == "received" and r.get("received") == r.get("count"))]
        r["error"] = "wrong delivery count or push error" + (f" ({', '.join(bits)})" if bits else "")
    return r


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_rate(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"


def fmt_ns(x):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:.1f} µs"
    return f"{x:.0f} ns"


def fmt_ratio(rs):
    rs = [r for r in rs if r is not None]
    if not rs:
        return "—"
    return f"{statistics.median(rs):.2f}x ({min(rs):.2f}–{max(rs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="full", choices=MODES)
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--only", default="", help="comma list of phases: " + ",".join(PHASES))
    a = ap.parse_args()
    M = MODES[a.mode]
    phases = set(a.only.split(",")) if a.only else set(PHASES)
    unknown = phases - set(PHASES)
    if unknown:
        ap.error(f"unknown phase(s) {','.join(sorted(unknown))}; phases: {','.join(PHASES)}")
    if a.skip_callgrind:
        phases.discard("callgrind")
    os.makedirs(RESULTS, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()

    contenders = [
        Contender("c-queue", os.path.join(BUILD, "libcqueue.so")),
        Contender("go-seed", os.path.join(BUILD, "libgoseed.so")),
        Contender("go-seed-map", os.path.join(BUILD, "libgoseed.so"), {"GOSEED_DECODE": "map"}, tput_only=True),
    ]
    notes = []
    jb_lib = os.path.join(BUILD, "libjsonbus.so")
    jb_info = "not available"
    if os.path.exists(jb_lib):
        h = hashlib.sha256(open(jb_lib, "rb").read()).hexdigest()[:12]
        jb_info = f"libjsonbus.so sha256 {h}, built {datetime.datetime.fromtimestamp(os.path.getmtime(jb_lib)).isoformat(timespec='seconds')}"
        if os.environ.get("JSONBUS_BENCH_BUILD_FAILED"):
            notes.append("cargo build --release FAILED: the libjsonbus.so measured is an older build.")
        contenders.append(Contender("jsonbus", jb_lib))
        contenders.append(Contender("jsonbus-2d", jb_lib, {"JSONBUS_DEFAULT_OPTIONS": '{"dispatcher_threads":2}'}))
    else:
        notes.append("jsonbus: no libjsonbus.so could be built; only the peers were measured.")
    names = [c.name for c in contenders]

    # sanity: every contender loads, and does jsonbus-2d really run 2 dispatchers?
    infos = {}
    for c in list(contenders):
        r = run_driver(c, ["info"], 30)
        if "error" in r:
            notes.append(f"{c.name}: does not load ({r['error']}); dropped.")
            contenders.remove(c)
            continue
        infos[c.name] = r
    for n in ("jsonbus", "jsonbus-2d"):
        st = (infos.get(n) or {}).get("stats")
        if isinstance(st, dict) and "dispatcher_threads" in st:
            notes.append(f"{n}: default bus reports dispatcher_threads = {st['dispatcher_threads']}.")
    if "jsonbus-2d" in infos:
        st = infos["jsonbus-2d"].get("stats")
        if isinstance(st, dict) and st.get("dispatcher_threads") not in (2, None):
            notes.append("jsonbus-2d: JSONBUS_DEFAULT_OPTIONS was not applied; jsonbus-2d ran like jsonbus.")
    names = [c.name for c in contenders if not c.tput_only]
    tnames = [c.name for c in contenders]  # the throughput tables' columns

    # request/reply (and timers): the hand-written C and the seed-002 Go peers, which export
    # only what the `request` workload resolves, against jsonbus's default bus
    rr = [Contender("c-reqrep", os.path.join(BUILD, "libcreqrep.so")),
          Contender("go-reqrep", os.path.join(BUILD, "libgoreqrep.so"))]
    if any(c.name == "jsonbus" for c in contenders):
        rr.append(Contender("jsonbus", jb_lib))
    if phases & {"request", "timers"}:
        for c in list(rr):
            if c.name == "jsonbus":
                r = infos.get("jsonbus", {})
            else:
                r = run_driver(c, ["info"], 30) if os.path.exists(c.lib) else {"error": f"no {c.lib}"}
            if "error" in r:
                notes.append(f"{c.name}: does not load ({r['error']}); left out of request/timers.")
                rr.remove(c)
                continue
            if c.name == "jsonbus" and r.get("request_api") is False:
                notes.append("jsonbus: this build has no jsonbus_request/jsonbus_reply: request prints n/a.")
            if c.name == "jsonbus" and r.get("timers_api") is False:
                notes.append("jsonbus: this build has no jsonbus_publish_after: timers prints n/a.")
    rnames = [c.name for c in rr]

    raw = open(os.path.join(RESULTS, "raw.jsonl"), "w")
    results = []

    def record(c, rnd, r, **k):
        r = dict(r)
        r.update(contender=c.name, round=rnd, **k)
        results.append(r)
        raw.write(json.dumps(r) + "\n")
        raw.flush()
        if "error" in r:
            log(f"  !! {c.name} {r.get('cmd', '')}: {r['error']}")
        return r

    def order(rnd, tput=False):
        cs = [c for c in contenders if tput or not c.tput_only]
        k = rnd % len(cs)
        return cs[k:] + cs[:k]

    # ---------------- throughput ----------------
    tput_cfgs = [(p, s, b) for s in SIZES for p in PUBS for b in SUBS]
    if "tput" in phases:
        for rnd in range(M["rounds"]):
            log(f"tput round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            for (p, s, b) in tput_cfgs:
                for c in order(rnd, tput=True):
                    n = M["tput_n"][s]
                    r = run_driver(c, ["tput", p, s, b, n], 300)
                    record(c, rnd, r, workload="tput", pubs=p, size=s, subs=b)

    def sel(**k):
        return [r for r in results if all(r.get(kk) == vv for kk, vv in k.items()) and "error" not in r]

    def per_round(workload, key, num, den, **k):
        out = []
        rounds = sorted({r["round"] for r in results if r.get("workload") == workload})
        for rnd in rounds:
            x = sel(workload=workload, contender=num, round=rnd, **k)
            y = sel(workload=workload, contender=den, round=rnd, **k)
            if x and y and y[0].get(key):
                out.append(x[0][key] / y[0][key])
        return out

    def tput_med(name, p, s, b, key="msgs_per_s"):
        return med([r[key] for r in sel(workload="tput", contender=name, pubs=p, size=s, subs=b)])

    # ---------------- latency ----------------
    if "lat" in phases:
        half = {}
        for c in order(0):
            m = tput_med(c.name, 1, 200, 1)
            half[c.name] = round(m / 2) if m else 50000
        for rnd in range(M["rounds"]):
            log(f"lat round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            for label in [str(x) for x in RATES] + ["half-max"]:
                for c in order(rnd):
                    rate = half[c.name] if label == "half-max" else int(label)
                    secs = M["lat_seconds"]
                    secs = min(secs, 2_000_000 / rate)
                    r = run_driver(c, ["lat", rate, secs, 200], 120)
                    record(c, rnd, r, workload="lat", label=label)

    # ---------------- burst into a slow subscriber ----------------
    if "burst" in phases:
        for rnd in range(M["burst_rounds"]):
            log(f"burst round {rnd + 1}/{M['burst_rounds']} ({time.time() - t_start:.0f}s)")
            for c in order(rnd):
                r = run_driver(c, ["burst", M["burst_n"], 200, BURST_SPIN_NS], 600)
                record(c, rnd, r, workload="burst")

    # ---------------- publish cost with many subscriptions ----------------
    if "fanout" in phases:
        for rnd in range(M["rounds"]):
            log(f"fanout round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            for o in FANOUT_OTHERS:
                for c in order(rnd):
                    r = run_driver(c, ["fanout", o, M["fanout_n"], 200], 300)
                    record(c, rnd, r, workload="fanout", others=o)

    # ---------------- fan-out to every subscriber (broadcast) ----------------
    # c-queue-2t: the same peer with 2 consumer threads, the counterpart of jsonbus-2d
    bcast = list(contenders)
    if any(c.name == "c-queue" for c in contenders):
        cq = next(c for c in contenders if c.name == "c-queue")
        bcast.insert(1, Contender("c-queue-2t", cq.lib, {"CQUEUE_THREADS": "2"}))
    bnames = [c.name for c in bcast]
    if "broadcast" in phases:
        for rnd in range(M["rounds"]):
            log(f"broadcast round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            k = rnd % len(bcast)
            for b in BROADCAST_SUBS:
                for c in bcast[k:] + bcast[:k]:
                    r = run_driver(c, ["broadcast", b, M["broadcast_n"][b], 200], 300)
                    record(c, rnd, r, workload="broadcast", subs=b)

    # ---------------- pull subscription: 1 publisher thread, 1 pulling thread ----------------
    if "pull" in phases:
        for rnd in range(M["rounds"]):
            log(f"pull round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            for pm in PULL_MODES:
                for c in order(rnd):
                    r = run_driver(c, ["pull", M["pull_n"], 200, pm], 300)
                    record(c, rnd, r, workload="pull", mode=pm)

    # ---------------- a subscription with a queue_limit vs one without ----------------
    if "limited" in phases:
        for rnd in range(M["rounds"]):
            log(f"limited round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            k = rnd % len(LIMITED_MODES)
            modes = LIMITED_MODES[k:] + LIMITED_MODES[:k]
            for c in order(rnd):
                for lm in modes:
                    r = run_driver(c, ["limited", M["limited_n"], 200, lm, QUEUE_LIMIT], 300)
                    record(c, rnd, r, workload="limited", mode=lm)

    # ---------------- request/reply: N requesters, sequential round trips ----------------
    if "request" in phases and rr:
        for rnd in range(M["rounds"]):
            log(f"request round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            k = rnd % len(rr)
            for q in REQUESTERS:
                for c in rr[k:] + rr[:k]:
                    r = run_driver(c, ["request", q, M["request_n"][q], REQUEST_SIZE], 300)
                    record(c, rnd, r, workload="request", requesters=q)

    # ---------------- timers: publish_after at a rate, lateness at the subscriber ----------------
    if "timers" in phases and rr:
        for rnd in range(M["rounds"]):
            log(f"timers round {rnd + 1}/{M['rounds']} ({time.time() - t_start:.0f}s)")
            k = rnd % len(rr)
            for tr in TIMER_RATES:
                for c in rr[k:] + rr[:k]:
                    r = run_driver(c, ["timers", tr, M["timers_n"][tr], TIMER_MAX_DELAY_MS], 300)
                    record(c, rnd, r, workload="timers", rate=tr)

    def per_round_self(workload, key, name, num, den):
        # ratio of two configurations (dicts of keys) of one contender, round by round
        out = []
        for rnd in sorted({r["round"] for r in results if r.get("workload") == workload}):
            x = [r for r in sel(workload=workload, contender=name, round=rnd, **num) if not r.get("na")]
            y = [r for r in sel(workload=workload, contender=name, round=rnd, **den) if not r.get("na")]
            if x and y and y[0].get(key):
                out.append(x[0][key] / y[0][key])
        return out

    def na(workload, name, **k):
        rs = [r for r in results if r.get("workload") == workload and r["contender"] == name
              and all(r.get(kk) == vv for kk, vv in k.items())]
        return bool(rs) and all(r.get("na") for r in rs)

    def measured(workload, name, key, **k):
        # rows of one contender that measured something (not n/a, not a crash or timeout),
        # also those whose ok was false (their figures still tell what went wrong)
        return [r for r in results if r.get("workload") == workload and r["contender"] == name
                and not r.get("na") and key in r and all(r.get(kk) == vv for kk, vv in k.items())]

    def per_round_m(workload, key, num, den, **k):
        # per-round ratio num / den over successful, measured runs only
        out = []
        for rnd in sorted({r["round"] for r in results if r.get("workload") == workload}):
            x = [r for r in measured(workload, num, key, round=rnd, **k) if "error" not in r]
            y = [r for r in measured(workload, den, key, round=rnd, **k) if "error" not in r]
            if x and y and y[0].get(key):
                out.append(x[0][key] / y[0][key])
        return out

    # ---------------- callgrind: instructions per message ----------------
    cg = {}
    cg_top = ""
    if "callgrind" in phases and shutil.which("valgrind"):
        import glob

        n = M["cg_n"]
        for c in order(0):
            log(f"callgrind {c.name} ({time.time() - t_start:.0f}s)")
            tot = {}
            for k in (1, 3):
                base = os.path.join(RESULTS, f"callgrind.{c.name}.{k}N.out")
                for f in glob.glob(base + "*"):
                    os.remove(f)
                r = run_driver(
                    c,
                    ["tput", 1, 200, 1, k * n],
                    1800,
                    prefix=["valgrind", "--tool=callgrind", "--dump-instr=no", "--separate-threads=yes",
                            f"--callgrind-out-file={base}"],
                    extra_env={"GODEBUG": "asyncpreemptoff=1"},
                )
                if "error" in r:
                    log(f"  !! callgrind {c.name}: {r['error']}")
                    break
                pub = other = 0
                for f in glob.glob(base + "-*"):
                    text = open(f).read()
                    t = 0
                    for line in text.splitlines():
                        if line.startswith("totals:") or line.startswith("summary:"):
                            t = int(line.split()[1])
                            break
                    if "pub_main" in text:
                        pub += t
                    else:
                        other += t
                tot[k] = (pub, other)
            if len(tot) == 2:
                cg[c.name] = tuple((tot[3][i] - tot[1][i]) / (2 * n) for i in (0, 1))
        # what the jsonbus threads spend their instructions on
        files = sorted(glob.glob(os.path.join(RESULTS, "callgrind.jsonbus.3N.out-*")))
        if files and shutil.which("callgrind_annotate"):
            parts = []
            sized = []
            for f in files:
                text = open(f).read()
                t = next((int(l.split()[1]) for l in text.splitlines() if l.startswith("totals:")), 0)
                sized.append((t, "pub_main" in text, f))
            pubf = [x for x in sized if x[1]]
            oth = sorted([x for x in sized if not x[1]], reverse=True)
            for label, lst, rows in (("publisher thread (push_json)", pubf, 22), ("busiest other thread (dispatcher)", oth[:1], 10)):
                if not lst:
                    continue
                out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=99", lst[0][2]],
                                     capture_output=True, text=True, timeout=300).stdout
                body = [l.rstrip() for l in out.splitlines() if l.strip() and l.strip()[0].isdigit()][:rows]
                parts.append(f"--- {label} ---\n" + "\n".join(body))
            cg_top = "\n".join(parts)
            with open(os.path.join(RESULTS, "callgrind-jsonbus-top.txt"), "w") as f:
                f.write(cg_top + "\n")
        for f in glob.glob(os.path.join(RESULTS, "callgrind.*.out*")):
            os.remove(f)
    raw.close()

    # ---------------- report ----------------
    L = []
    w = L.append
    elapsed = time.time() - t_start
    w(f"# jsonbus benchmarks — {a.mode} run")
    w("")
    w(f"Date: {started.isoformat(timespec='seconds')} · duration {elapsed / 60:.1f} min · "
      f"{M['rounds']} interleaved rounds (contender order rotated each round) · medians over rounds; "
      "ratios are the median of per-round ratios (min–max in brackets).")
    w("")
    w("Contenders: " + ", ".join(f"`{n}`" for n in names) + ". "
      "`c-queue` = hand-written C, one queue (mutex + ring) per subscriber, one shared refcounted copy, 1 consumer thread; `go-seed` = cgo `//export` + goroutine "
      "per message + `json.Valid` (the same work as jsonbus: validate, build nothing) + WaitGroup; `go-seed-map` = the same peer "
      "decoding into a `map[string]any` as the seed's handler did (work jsonbus does not do; throughput only); `jsonbus` = default bus (1 dispatcher); `jsonbus-2d` = "
      "`JSONBUS_DEFAULT_OPTIONS={\"dispatcher_threads\":2}`."
      + (" Request/reply and timers: " + ", ".join(f"`{n}`" for n in rnames) + " (`c-reqrep` = hand-written C "
         "request queue + per-request reply slot; `go-reqrep` = the seed 002 coordinator with one requests and one "
         "responses channel)." if any(r.get("workload") in ("request", "timers") for r in results) else ""))
    w("")
    w("## Machine and tools")
    w("")
    w("```")
    w(sh("uname -a"))
    w(sh("lscpu | grep -E '^(Model name|CPU\\(s\\)|Thread|Core|Hypervisor|L2|L3)'"))
    w(sh("free -h | head -2"))
    w(sh("gcc --version | head -1"))
    w(sh(f"{os.environ.get('GO', 'go')} version"))
    w(sh("rustc --version"))
    w(sh("valgrind --version"))
    w(f"jsonbus: {jb_info}; main HEAD: {sh('git -C ' + os.path.dirname(HERE) + ' rev-parse --short HEAD 2>/dev/null') or '(no commit)'}")
    w("```")
    w("")
    if notes:
        w("Notes: " + " ".join(notes))
        w("")
    errs = [r for r in results if "error" in r]
    if errs:
        w(f"**{len(errs)} runs failed** (see raw.jsonl): " + "; ".join(
            sorted({f"{r['contender']} {r.get('workload')}: {r['error'][:120]}" for r in errs})[:8]))
        w("")

    # targets
    jb = "jsonbus" in names
    w("## Targets")
    w("")
    if jb:
        w("| target | measured | met? |")
        w("|---|---|---|")
        for p in (1, 2):
            for den, factor in (("go-seed", 10), ("c-queue", 1.5)):
                rs = per_round("tput", "msgs_per_s", "jsonbus", den, pubs=p, size=200, subs=1)
                if not rs:
                    continue
                m = med(rs)
                w(f"| throughput 200 B, {p} pub, 1 sub ≥ {factor}x {den} | {fmt_ratio(rs)} | "
                  f"{'yes' if m and m >= factor else 'NO'} |")
        rs = per_round("tput", "msgs_per_s", "jsonbus", "c-queue", pubs=4, size=200, subs=1)
        if rs:
            m = med(rs)
            w(f"| throughput 200 B, 4 pub, 1 sub ≥ 1x c-queue | {fmt_ratio(rs)} | {'yes' if m and m >= 1 else 'NO'} |")
        if "jsonbus" in cg:
            t_ = sum(cg["jsonbus"])
            w(f"| ≤ 2,500 instructions/message (callgrind) | {t_:,.0f} | {'yes' if t_ <= 2500 else 'NO'} |")
        if sel(workload="broadcast", contender="jsonbus"):
            rs = per_round("broadcast", "msgs_per_s", "jsonbus", "c-queue", subs=8)
            m = med(rs)
            w(f"| fan-out to 8 subscribers (200 B, 1 pub): msgs/s ≥ 1x c-queue's | {fmt_ratio(rs)} | "
              f"{'yes' if m and m >= 1 else 'NO'} |")
            rs = per_round("broadcast", "ns_per_delivery", "jsonbus", "c-queue", subs=1000)
            m = med(rs)
            w(f"| fan-out to 1,000 subscribers: ns per delivery ≤ 2x c-queue's | {fmt_ratio(rs)} | "
              f"{'yes' if m and m <= 2 else 'NO'} |")
        if sel(workload="limited", contender="jsonbus", mode="block"):
            rs = per_round_self("limited", "publish_ns", "jsonbus", {"mode": "block"}, {"mode": "none"})
            m = med(rs)
            w(f"| publish with `queue_limit` {QUEUE_LIMIT} \"block\" ≤ 1.10x without (ns per publish, 1 pub 1 sub 200 B) "
              f"| {fmt_ratio(rs)} | {'yes' if m and m <= 1.10 else 'NO'} |")
        if any(r.get("workload") == "request" and r["contender"] == "jsonbus" for r in results):
            if not measured("request", "jsonbus", "p50_ns"):
                w("| request/reply: round trip p50 ≤ ½ c-reqrep's, round trips/s ≥ 5x go-reqrep's | "
                  "n/a (this jsonbus has no jsonbus_request, or every run failed) | NO |")
            for q in REQUESTERS:
                rs = per_round_m("request", "p50_ns", "jsonbus", "c-reqrep", requesters=q)
                if rs:
                    m = med(rs)
                    w(f"| request round trip p50 ({q} requester{'s' if q > 1 else ''}, {REQUEST_SIZE} B) ≤ ½ c-reqrep's "
                      f"| {fmt_ratio(rs)} | {'yes' if m and m <= 0.5 else 'NO'} |")
            for q in REQUESTERS:
                rs = per_round_m("request", "rt_per_s", "jsonbus", "go-reqrep", requesters=q)
                if rs:
                    m = med(rs)
                    w(f"| round trips/s ({q} requester{'s' if q > 1 else ''}) ≥ 5x go-reqrep's (seed 002) "
                      f"| {fmt_ratio(rs)} | {'yes' if m and m >= 5 else 'NO'} |")
        if any(r.get("workload") == "timers" and r["contender"] == "jsonbus" for r in results):
            if not measured("timers", "jsonbus", "p99_late_ns"):
                w("| timer lateness p99 < 1 ms | n/a (this jsonbus has no jsonbus_publish_after, or every run failed) | NO |")
            for tr in TIMER_RATES:
                rs = measured("timers", "jsonbus", "p99_late_ns", rate=tr)
                if rs:
                    p99 = med([r["p99_late_ns"] for r in rs])
                    early = sum(r["early"] for r in rs)
                    lost = sum(r["count"] - r["received"] for r in rs)
                    w(f"| timer lateness p99 < 1 ms at {tr:,} timers/s, none early, none lost | p99 {fmt_ns(p99)} "
                      f"(worst round {fmt_ns(max(r['p99_late_ns'] for r in rs))}), {early} early, {lost} lost | "
                      f"{'yes' if p99 < 1e6 and early == 0 and lost == 0 else 'NO'} |")
        jl = med([r["p50_ns"] for r in sel(workload="lat", contender="jsonbus", label="20000")])
        cl = med([r["p50_ns"] for r in sel(workload="lat", contender="c-queue", label="20000")])
        if jl and cl:
            w(f"| latency p50 at 20k msgs/s ≤ ½ c-queue's | {fmt_ns(jl)} vs {fmt_ns(cl)} ({jl / cl:.2f}x) | "
              f"{'yes' if jl <= cl / 2 else 'NO'} |")
    else:
        w("jsonbus was not measured.")
    w("")

    if any(r.get("workload") == "tput" for r in results):
        w("## Throughput (messages/s published and delivered to every subscriber, until flush returns)")
        w("")
        hdr = "| pubs | size | subs | " + " | ".join(tnames) + (" | jsonbus / go-seed | jsonbus / c-queue |" if jb else " |")
        w(hdr)
        w("|" + "---|" * (3 + len(tnames) + (2 if jb else 0)))
        for (p, s, b) in sorted(tput_cfgs, key=lambda x: (x[1], x[2], x[0])):
            row = f"| {p} | {s} | {b} | " + " | ".join(fmt_rate(tput_med(n, p, s, b)) for n in tnames)
            if jb:
                row += " | " + fmt_ratio(per_round("tput", "msgs_per_s", "jsonbus", "go-seed", pubs=p, size=s, subs=b))
                row += " | " + fmt_ratio(per_round("tput", "msgs_per_s", "jsonbus", "c-queue", pubs=p, size=s, subs=b))
            w(row + " |")
        w("")
        if "jsonbus-2d" in tnames:
            w("jsonbus-2d / jsonbus (per-round ratio, 1 sub and 8 subs, 200 B): " + ", ".join(
                f"{p} pub {b} sub {fmt_ratio(per_round('tput', 'msgs_per_s', 'jsonbus-2d', 'jsonbus', pubs=p, size=200, subs=b))}"
                for p in PUBS for b in SUBS))
            w("")
        w("## Bigger payloads (MB/s of payload published and delivered, 1 subscriber)")
        w("")
        w("| pubs | size | " + " | ".join(f"{n} MB/s" for n in tnames) + (" | jsonbus / c-queue |" if jb else " |"))
        w("|" + "---|" * (2 + len(tnames) + (1 if jb else 0)))
        for s_ in (4096, 65536):
            for p in PUBS:
                row = f"| {p} | {s_} | " + " | ".join(
                    (f"{v:,.0f}" if (v := tput_med(n, p, s_, 1, "mb_per_s")) else "—") for n in tnames)
                if jb:
                    row += " | " + fmt_ratio(per_round("tput", "mb_per_s", "jsonbus", "c-queue", pubs=p, size=s_, subs=1))
                w(row + " |")
        w("")
        w("## CPU time per message (user+sys of the whole process ÷ messages, same runs)")
        w("")
        w("| pubs | size | subs | " + " | ".join(tnames) + " |")
        w("|" + "---|" * (3 + len(tnames)))
        for (p, s, b) in sorted(tput_cfgs, key=lambda x: (x[1], x[2], x[0])):
            w(f"| {p} | {s} | {b} | " + " | ".join(fmt_ns(tput_med(n, p, s, b, "cpu_ns_per_msg")) for n in tnames) + " |")
        w("")
        w("## Peak RSS (VmHWM of the driver process, median over rounds)")
        w("")
        w("| run | " + " | ".join(tnames) + " |")
        w("|" + "---|" * (1 + len(tnames)))
        for (p, s, b) in [(1, 200, 1), (4, 200, 8), (1, 65536, 1), (4, 65536, 8)]:
            w(f"| tput {p} pub, {s} B, {b} sub ({M['tput_n'][s]} msgs) | " + " | ".join(
                f"{(tput_med(n, p, s, b, 'maxrss_kb') or 0) / 1024:.1f} MiB" for n in tnames) + " |")
        w("")

    if any(r.get("workload") == "lat" for r in results):
        w("## Push-to-callback latency (200 B, 1 publisher paced with clock_nanosleep, 1 subscriber)")
        w("")
        w("Timestamp = `jsonbus_now_ns()` written into the JSON text just before `push_json`; the callback "
          "parses it with strtoull. First 2% of samples dropped. Percentiles are medians over rounds, max is "
          "the max over rounds. Pacing: clock_nanosleep to each send time when the period is ≥ 20 µs, "
          "a spin on the clock below that (100k/s and ½ max), so CPU/msg (whole process) includes the "
          "driver's pacing and is only comparable between contenders at the same rate.")
        w("")
        w("| rate | contender | achieved/s | p50 | p99 | p99.9 | max | push_json call p50 / p99 / max | CPU/msg |")
        w("|---|---|---|---|---|---|---|---|---|")
        for label in [str(x) for x in RATES] + ["half-max"]:
            for n in names:
                rs = sel(workload="lat", contender=n, label=label)
                if not rs:
                    continue
                lab = f"{int(label) // 1000}k/s" if label != "half-max" else f"½ max ({fmt_rate(rs[0]['rate'])}/s)"
                w(f"| {lab} | {n} | {fmt_rate(med([r['achieved_rate'] for r in rs]))} | "
                  f"{fmt_ns(med([r['p50_ns'] for r in rs]))} | {fmt_ns(med([r['p99_ns'] for r in rs]))} | "
                  f"{fmt_ns(med([r['p999_ns'] for r in rs]))} | {fmt_ns(max(r['max_ns'] for r in rs))} | "
                  f"{fmt_ns(med([r.get('push_p50_ns') for r in rs]))} / {fmt_ns(med([r.get('push_p99_ns') for r in rs]))} / "
                  f"{fmt_ns(max(r.get('push_max_ns', 0) for r in rs))} | "
                  f"{fmt_ns(med([r['cpu_ns_per_msg'] for r in rs]))} |")
        if jb:
            w("")
            w("p50 ratio jsonbus / c-queue per rate: " + ", ".join(
                f"{l}: {fmt_ratio(per_round('lat', 'p50_ns', 'jsonbus', 'c-queue', label=l))}"
                for l in [str(x) for x in RATES]))
        w("")

    if any(r.get("workload") == "burst" for r in results):
        w(f"## Burst of {M['burst_n']:,} × 200 B messages into a slow subscriber ({BURST_SPIN_NS} ns spin per message)")
        w("")
        w("A monitor thread samples RSS (/proc/self/statm) and queued = pushed − delivered every 2 ms; "
          "bytes/queued = (RSS at the largest queue − RSS before the burst) ÷ that queue length.")
        w("")
        w("| contender | max queued | RSS growth at max queue | bytes / queued msg | peak RSS | publish time | drain after |")
        w("|---|---|---|---|---|---|---|")
        for n in names:
            rs = sel(workload="burst", contender=n)
            if not rs:
                continue
            w(f"| {n} | {med([r['max_queued'] for r in rs]):,.0f} | "
              f"{med([(r['rss_at_max_queued_kb'] - r['baseline_rss_kb']) / 1024 for r in rs]):.1f} MiB | "
              f"{med([r['bytes_per_queued'] for r in rs]):,.0f} | {med([r['maxrss_kb'] / 1024 for r in rs]):.1f} MiB | "
              f"{med([r['publish_seconds'] for r in rs]):.2f} s | {med([r['drain_seconds'] for r in rs]):.2f} s |")
        w("")

    if any(r.get("workload") == "fanout" for r in results):
        w("## Publish cost with many subscriptions on other topics (full API, 200 B, 1 matching subscriber)")
        w("")
        w("Other subscriptions: half `other.<i>`, half `other.*.x<i>.>`; publishing on `bench.target`.")
        w("")
        w("| contender | other subs | publish call | msgs/s incl. flush | CPU/msg | subscribe call |")
        w("|---|---|---|---|---|---|")
        for n in names:
            for o in FANOUT_OTHERS:
                rs = [r for r in results if r.get("workload") == "fanout" and r["contender"] == n and r.get("others") == o]
                if not rs:
                    continue
                if any(r.get("na") for r in rs):
                    w(f"| {n} | {o:,} | n/a | n/a | n/a | n/a |")
                    continue
                rs = [r for r in rs if "error" not in r]
                if not rs:
                    w(f"| {n} | {o:,} | failed | | | |")
                    continue
                w(f"| {n} | {o:,} | {fmt_ns(med([r['publish_ns'] for r in rs]))} | "
                  f"{fmt_rate(med([r['msgs_per_s'] for r in rs]))} | {fmt_ns(med([r['cpu_ns_per_msg'] for r in rs]))} | "
                  f"{fmt_ns(med([r['subscribe_ns_each'] for r in rs])) if o else '—'} |")
        w("")

    if any(r.get("workload") == "broadcast" for r in results):
        w("## Fan-out: 1 publisher, 200 B, every message to every subscriber (`broadcast`)")
        w("")
        w("`register_callback` N times, then one publisher thread `push_json`s; time from its first push until "
          "`jsonbus_flush` returns. deliveries = messages × subscribers; ns / delivery = that time ÷ deliveries; "
          "CPU = user+sys of the whole process. Publisher CPU = the publishing thread's own CPU time "
          "(`CLOCK_THREAD_CPUTIME_ID`) ÷ messages. `c-queue` = one queue per subscriber, one shared refcounted "
          "copy, 1 consumer thread; `c-queue-2t` = the same with 2 consumer threads (`CQUEUE_THREADS=2`, the "
          "counterpart of `jsonbus-2d`). Messages: " + ", ".join(f"{b} subs × {M['broadcast_n'][b]:,}" for b in BROADCAST_SUBS) + ".")
        w("")
        w("| subs | contender | msgs/s | deliveries/s | ns / delivery | CPU / delivery | publisher CPU / msg | publish call | peak RSS |")
        w("|---|---|---|---|---|---|---|---|---|")
        for b in BROADCAST_SUBS:
            for n in bnames:
                rs = sel(workload="broadcast", contender=n, subs=b)
                if not rs:
                    continue
                w(f"| {b:,} | {n} | {fmt_rate(med([r['msgs_per_s'] for r in rs]))} | "
                  f"{fmt_rate(med([r['deliveries_per_s'] for r in rs]))} | {med([r['ns_per_delivery'] for r in rs]):.1f} ns | "
                  f"{med([r['cpu_ns_per_delivery'] for r in rs]):.1f} ns | {fmt_ns(med([r['pub_cpu_ns_per_msg'] for r in rs]))} | "
                  f"{fmt_ns(med([r['publish_ns'] for r in rs]))} | {med([r['maxrss_kb'] for r in rs]) / 1024:.1f} MiB |")
        w("")
        if jb:
            w("Per-round ratios: " + "; ".join(
                f"{b:,} subs: jsonbus / c-queue msgs/s {fmt_ratio(per_round('broadcast', 'msgs_per_s', 'jsonbus', 'c-queue', subs=b))}, "
                f"ns/delivery {fmt_ratio(per_round('broadcast', 'ns_per_delivery', 'jsonbus', 'c-queue', subs=b))}"
                + (f"; jsonbus-2d / c-queue-2t msgs/s {fmt_ratio(per_round('broadcast', 'msgs_per_s', 'jsonbus-2d', 'c-queue-2t', subs=b))}"
                   if "jsonbus-2d" in bnames and "c-queue-2t" in bnames else "")
                for b in BROADCAST_SUBS) + ".")
            w("")
        ooo = sorted({r["contender"] for r in results if r.get("workload") == "broadcast" and r.get("out_of_order")})
        if ooo:
            w("Seen out of seq order by some subscriber: " + ", ".join(ooo) + " (go-seed has no order by design).")
            w("")

    if any(r.get("workload") == "pull" for r in results):
        w(f"## Pull subscription: 1 publisher thread, 1 thread pulling ({M['pull_n']:,} × 200 B)")
        w("")
        w("`jsonbus_subscribe_pull(jsonbus_default(), \">\", NULL)`; the publisher `push_json`s; the main thread "
          "takes every message with `jsonbus_next` and `jsonbus_message_release`s it. `wait`: `jsonbus_next(…, "
          "timeout)` blocks; `poll`: `poll(2)` on `jsonbus_pull_fd`, then `jsonbus_next(…, 0)` until it times out. "
          "msgs/s from the first push until `jsonbus_flush` returns. c-queue's pull is a per-subscriber "
          "mutex + condvar pop (`poll`: an eventfd raised on empty → non-empty).")
        w("")
        w("| mode | contender | msgs/s | publish call | publisher CPU / msg | puller CPU / msg | polls / msg |")
        w("|---|---|---|---|---|---|---|")
        for pm in PULL_MODES:
            for n in names:
                if na("pull", n, mode=pm):
                    w(f"| {pm} | {n} | n/a | n/a | n/a | n/a | n/a |")
                    continue
                rs = [r for r in sel(workload="pull", contender=n, mode=pm) if not r.get("na")]
                if not rs:
                    continue
                w(f"| {pm} | {n} | {fmt_rate(med([r['msgs_per_s'] for r in rs]))} | "
                  f"{fmt_ns(med([r['publish_ns'] for r in rs]))} | {fmt_ns(med([r['pub_cpu_ns_per_msg'] for r in rs]))} | "
                  f"{fmt_ns(med([r['pull_cpu_ns_per_msg'] for r in rs]))} | "
                  + (f"{med([r['polls'] / r['messages'] for r in rs]):.3f}" if pm == "poll" else "—") + " |")
        w("")
        if jb:
            w("Per-round ratio jsonbus / c-queue (msgs/s): " + ", ".join(
                f"{pm} {fmt_ratio(per_round('pull', 'msgs_per_s', 'jsonbus', 'c-queue', mode=pm))}" for pm in PULL_MODES) + ".")
            w("")

    if any(r.get("workload") == "limited" for r in results):
        w(f"## A subscription with a `queue_limit` vs one without (1 pub, 1 sub, 200 B, {M['limited_n']:,} messages)")
        w("")
        w("`none` = `jsonbus_subscribe(jsonbus_default(), \">\", …)`; the others = `jsonbus_subscribe_with(…, "
          f"'{{\"queue_limit\":{QUEUE_LIMIT},\"on_full\":\"<mode>\"}}', …)`. The publisher `push_json`s as fast as it "
          "can; publish call = its wall time ÷ messages (includes waiting for room: the bus's `queue_capacity` "
          "for `none`, the limit for `block`); msgs/s = messages ÷ time until `jsonbus_flush` returns "
          "(for `drop_new` most are dropped, see delivered). The three modes run back to back per contender "
          "and round, their order rotated.")
        w("")
        w("| contender | subscription | publish call | msgs/s incl. flush | publisher CPU / msg | CPU / msg | delivered | dropped | max queued |")
        w("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            if all(na("limited", n, mode=lm) for lm in LIMITED_MODES):
                w(f"| {n} | {', '.join(LIMITED_MODES)} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                continue
            for lm in LIMITED_MODES:
                if na("limited", n, mode=lm):
                    w(f"| {n} | {lm} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                    continue
                rs = [r for r in sel(workload="limited", contender=n, mode=lm) if not r.get("na")]
                if not rs:
                    continue
                w(f"| {n} | {lm} | {fmt_ns(med([r['publish_ns'] for r in rs]))} | "
                  f"{fmt_rate(med([r['msgs_per_s'] for r in rs]))} | {fmt_ns(med([r['pub_cpu_ns_per_msg'] for r in rs]))} | "
                  f"{fmt_ns(med([r['cpu_ns_per_msg'] for r in rs]))} | {med([r['delivered'] for r in rs]):,.0f} | "
                  f"{med([r['dropped'] for r in rs]):,.0f} | {med([r['max_queued'] for r in rs]):,.0f} |")
        w("")
        for n in ("jsonbus", "jsonbus-2d"):
            if sel(workload="limited", contender=n, mode="none") and not na("limited", n, mode="none"):
                parts = []
                for lm in LIMITED_MODES[1:]:
                    parts.append(f"{lm} / none: publish call {fmt_ratio(per_round_self('limited', 'publish_ns', n, {'mode': lm}, {'mode': 'none'}))}, "
                                 f"msgs/s {fmt_ratio(per_round_self('limited', 'msgs_per_s', n, {'mode': lm}, {'mode': 'none'}))}, "
                                 f"publisher CPU {fmt_ratio(per_round_self('limited', 'pub_cpu_ns_per_msg', n, {'mode': lm}, {'mode': 'none'}))}")
                w(f"{n}, per-round ratios: " + "; ".join(parts) + ".")
                w("")

    if any(r.get("workload") == "request" for r in results):
        w(f"## Request/reply: N requester threads, sequential round trips ({REQUEST_SIZE} B, echo responder)")
        w("")
        w("One responder subscription on `bench.svc.echo` whose callback echoes each request with `jsonbus_reply`; "
          "N requester threads each do " + ", ".join(f"{M['request_n'][q]:,} (N = {q})" for q in REQUESTERS)
          + " sequential `jsonbus_request(…, timeout 10000 ms, …)` calls after 50 warm-up ones, each timed with "
          "`CLOCK_MONOTONIC`. Each request carries its requester's id and sequence number; a round trip counts "
          "only if the reply is byte-for-byte its own request. round trips/s = all of them ÷ (last requester's "
          "end − first requester's start); CPU = user+sys of the whole process ÷ round trips; requester CPU = "
          "the requester threads' own CPU time ÷ round trips. `c-reqrep` = hand-written C: a mutex + condvar "
          "queue, one consumer thread, a mutex + condvar reply slot per request, no validation; `go-reqrep` = "
          "seed 002: one unbuffered requests channel, one unbuffered responses channel, one coordinator "
          "goroutine calling the C responder through a trampoline, `json.Valid` on request and reply.")
        w("")
        w("| requesters | contender | round trips/s | p50 | p90 | p99 | p99.9 | max | CPU / round trip | requester CPU / round trip | failed runs |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for q in REQUESTERS:
            for n in rnames:
                if na("request", n, requesters=q):
                    w(f"| {q} | {n} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | — |")
                    continue
                rs_all = [r for r in results if r.get("workload") == "request" and r["contender"] == n
                          and r.get("requesters") == q]
                rs = [r for r in measured("request", n, "p50_ns", requesters=q) if "error" not in r]
                bad = [r for r in rs_all if "error" in r]
                if not rs:
                    if bad:
                        w(f"| {q} | {n} | failed: {bad[0]['error'][:80]} | | | | | | | | {len(bad)} |")
                    continue
                w(f"| {q} | {n} | {fmt_rate(med([r['rt_per_s'] for r in rs]))} | "
                  f"{fmt_ns(med([r['p50_ns'] for r in rs]))} | {fmt_ns(med([r['p90_ns'] for r in rs]))} | "
                  f"{fmt_ns(med([r['p99_ns'] for r in rs]))} | {fmt_ns(med([r['p999_ns'] for r in rs]))} | "
                  f"{fmt_ns(max(r['max_ns'] for r in rs))} | {fmt_ns(med([r['cpu_ns_per_rt'] for r in rs]))} | "
                  f"{fmt_ns(med([r['requester_cpu_ns_per_rt'] for r in rs]))} | {len(bad) or '—'} |")
        w("")
        if "jsonbus" in rnames and measured("request", "jsonbus", "p50_ns"):
            w("Per-round ratios: " + "; ".join(
                f"{q} requester{'s' if q > 1 else ''}: jsonbus / c-reqrep p50 "
                f"{fmt_ratio(per_round_m('request', 'p50_ns', 'jsonbus', 'c-reqrep', requesters=q))}, "
                f"round trips/s {fmt_ratio(per_round_m('request', 'rt_per_s', 'jsonbus', 'c-reqrep', requesters=q))}; "
                f"jsonbus / go-reqrep round trips/s {fmt_ratio(per_round_m('request', 'rt_per_s', 'jsonbus', 'go-reqrep', requesters=q))}"
                for q in REQUESTERS) + ".")
            w("")

    if any(r.get("workload") == "timers" for r in results):
        w(f"## Timers: `jsonbus_publish_after` at a fixed rate, lateness at the subscriber")
        w("")
        w(f"One thread arms " + ", ".join(f"{M['timers_n'][tr]:,} timers at {tr:,}/s" for tr in TIMER_RATES)
          + f" (paced with clock_nanosleep: one at a time at 1,000/s, in batches of 100 per millisecond at 100,000/s), each with a delay "
          f"drawn uniformly from 1..{TIMER_MAX_DELAY_MS} ms (a fixed pseudo-random sequence, so timers are armed "
          "out of due order) and a 200 B payload carrying its due time = `jsonbus_now_ns()` read just before the "
          "call + the delay. A callback subscription on the timer topic reads `jsonbus_now_ns()` on entry: "
          "lateness = that − due, so it includes the hand-off to the dispatcher and the callback's start. "
          "early = callbacks that ran before their due time (must be 0). Percentiles are medians over rounds, "
          "max and early are over all rounds. The peers have no timers (n/a).")
        w("")
        w("| rate | contender | armed/s | fired / armed | lateness min | p50 | p90 | p99 | p99.9 | max | early | publish_after call p50 / p99 | CPU / timer |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for tr in TIMER_RATES:
            for n in rnames:
                if na("timers", n, rate=tr):
                    w(f"| {tr:,}/s | {n} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
                    continue
                rs = measured("timers", n, "p99_late_ns", rate=tr)
                if not rs:
                    bad = [r for r in results if r.get("workload") == "timers" and r["contender"] == n
                           and r.get("rate") == tr and "error" in r]
                    if bad:
                        w(f"| {tr:,}/s | {n} | failed: {bad[0]['error'][:80]} | | | | | | | | | | |")
                    continue
                w(f"| {tr:,}/s | {n} | {fmt_rate(med([r['achieved_rate'] for r in rs]))} | "
                  f"{sum(r['received'] for r in rs):,} / {sum(r['count'] for r in rs):,} | "
                  f"{fmt_ns(min(r['min_late_ns'] for r in rs)) if min(r['min_late_ns'] for r in rs) >= 0 else str(min(r['min_late_ns'] for r in rs)) + ' ns'} | "
                  f"{fmt_ns(med([r['p50_late_ns'] for r in rs]))} | {fmt_ns(med([r['p90_late_ns'] for r in rs]))} | "
                  f"{fmt_ns(med([r['p99_late_ns'] for r in rs]))} | {fmt_ns(med([r['p999_late_ns'] for r in rs]))} | "
                  f"{fmt_ns(max(r['max_late_ns'] for r in rs))} | {sum(r['early'] for r in rs)} | "
                  f"{fmt_ns(med([r['call_p50_ns'] for r in rs]))} / {fmt_ns(med([r['call_p99_ns'] for r in rs]))} | "
                  f"{fmt_ns(med([r['cpu_ns_per_timer'] for r in rs]))} |")
        w("")

    if cg:
        w(f"## Instructions per message (callgrind, tput 1 pub 200 B 1 sub; (Ir(3N) − Ir(N)) ÷ 2N, N = {M['cg_n']:,})")
        w("")
        w("`--separate-threads=yes`; \"publisher thread\" = the thread running the driver's publish loop "
          "(push_json and everything it calls), \"other\" = every other thread (dispatchers / consumer / Go "
          "runtime, main). Valgrind serialises threads, so spinning waits are counted too and depend on "
          "scheduling. Go ran with `GODEBUG=asyncpreemptoff=1`. Includes the driver's own loop and counting "
          "callback (c-queue's row shows how little that is).")
        w("")
        w("| contender | total / message | publisher thread | all other threads |")
        w("|---|---|---|---|")
        for n in names:
            if n in cg:
                p_, o_ = cg[n]
                w(f"| {n} | {p_ + o_:,.0f} | {p_:,.0f} | {o_:,.0f} |")
            else:
                w(f"| {n} | failed | | |")
        w("")
        if cg_top:
            w("Top functions (self cost) in the jsonbus 3N run, per thread (`callgrind_annotate --inclusive=no`):")
            w("")
            w("```")
            w(cg_top)
            w("```")
            w("")

    has_chart = any(r.get("workload") in ("tput", "lat") and "error" not in r for r in results)
    if has_chart:
        w("![chart](chart.png)")
        w("")
    w("Raw per-run results: `raw.jsonl`.")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write("\n".join(L) + "\n")

    try:
        if has_chart:
            chart(results, names, os.path.join(RESULTS, "chart.png"))
        else:
            log("no tput or lat results: chart.png left as it was")
    except Exception as e:  # noqa: BLE001
        log(f"chart failed: {e}")
    log(f"done in {elapsed:.0f}s: {os.path.join(RESULTS, 'latest.md')}")


def chart(results, names, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def ok(r):
        return "error" not in r

    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    for (i, (p, b)) in enumerate([(1, 1), (2, 8)]):
        a = ax[0][i]
        for n in names:
            ys = []
            for s in SIZES:
                ys.append(med([r["msgs_per_s"] for r in results if ok(r) and r.get("workload") == "tput"
                               and r["contender"] == n and r["pubs"] == p and r["size"] == s and r["subs"] == b]))
            if any(ys):
                a.plot(SIZES, [y or float("nan") for y in ys], marker="o", label=n)
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xticks(SIZES, [str(s) for s in SIZES])
        a.set_xlabel("message size (bytes)")
        a.set_ylabel("messages / s")
        a.set_title(f"Throughput, {p} publisher(s), {b} subscriber(s)")
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    labels = [str(x) for x in RATES] + ["half-max"]
    for (i, (key, title)) in enumerate([("p50_ns", "p50"), ("p99_ns", "p99")]):
        a = ax[1][i]
        width = 0.8 / max(1, len(names))
        for j, n in enumerate(names):
            ys = [med([r[key] for r in results if ok(r) and r.get("workload") == "lat" and r["contender"] == n
                       and r.get("label") == l]) for l in labels]
            xs = [k + j * width for k in range(len(labels))]
            a.bar(xs, [(y or 0) / 1000 for y in ys], width=width, label=n)
        a.set_xticks([k + 0.4 - width / 2 for k in range(len(labels))],
                     ["10k/s", "20k/s", "100k/s", "½ max"])
        a.set_yscale("log")
        a.set_ylabel("µs")
        a.set_title(f"Push-to-callback latency {title} (200 B)")
        a.grid(True, axis="y", which="both", alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
