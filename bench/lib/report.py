#!/usr/bin/env python3
"""Turns raw wrk / pgbench / RSS output into result records, and records into the report.

  report.py wrk     --name NAME --out FILE [--role measure|check] [--exit-code N] [--strict]
                    [--cpu-before F --cpu-after F] < wrk-stdout
  report.py pgbench --name NAME --out FILE --log-prefix P [--role measure|check] [--exit-code N]
                    [--mode M] [--script S] [--cpu-before F --cpu-after F] < pgbench-stdout
  report.py rss     --out FILE --idle-status F --load-samples F --after-status F --connections C
                    [--wrk-stdout F --wrk-exit-code N]
  report.py render  --results FILE --meta FILE [--markdown FILE]

Each of the first three appends one JSON object (one line) to --out; `render` prints the table and
appends a dated markdown block. Records with role "check" (warm-up runs that verify every answer)
are not tabled but count for validity. A run is *valid* only when the tool exited 0, did some work and saw
no error of any kind; `render` exits 1 if any run is invalid, so nobody quotes a number from a run
that failed requests or read nothing.

--cpu-before/--cpu-after are copies of /proc/stat taken around the run; the record then says how
busy each CPU was, which shows whether the system under test or the load generator was the
bottleneck. Latency is in microseconds everywhere. pgbench's p50/p99 come from its per-transaction log
(--log), every transaction of the measured run, nearest-rank percentiles; wrk's from its own
histogram of every request.
"""

import argparse
import glob
import json
import math
import os
import re
import sys
from datetime import datetime, timezone


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def cpu_busy(before_path, after_path):
    """Busy % per CPU between two copies of /proc/stat, e.g. {"cpu0": 99.2, "cpu1": 41.0}."""
    if not before_path or not after_path:
        return None

    def read(path):
        out = {}
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0].startswith("cpu") and parts[0] != "cpu":
                        v = [int(x) for x in parts[1:]]
                        idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
                        out[parts[0]] = (sum(v[:8]), idle)     # guest time is inside user
        except OSError:
            return {}
        return out

    b, a = read(before_path), read(after_path)
    busy = {}
    for cpu in sorted(a, key=lambda c: int(c[3:])):
        if cpu in b:
            total = a[cpu][0] - b[cpu][0]
            idle = a[cpu][1] - b[cpu][1]
            busy[cpu] = round(100.0 * (total - idle) / total, 1) if total > 0 else 0.0
    return busy or None


def fmt_busy(busy):
    if not busy:
        return "-"
    return " / ".join(f"{k} {v:.0f}%" for k, v in busy.items())


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)
    return sorted_values[k]


# --------------------------------------------------------------------------------------------- wrk

def cmd_wrk(a):
    text = sys.stdin.read()
    rec = {"kind": "http", "name": a.name, "role": a.role, "round": a.round, "exit_code": a.exit_code,
           "valid": False, "problems": []}
    m = re.search(r"^TESSERA_WRK (\{.*\})\s*$", text, re.M)
    if not m:
        rec["problems"].append("no TESSERA_WRK line in wrk output (script error?)")
    else:
        w = json.loads(m.group(1))
        rec.update({
            "requests": w["requests"], "duration_s": w["duration_s"], "rps": w["rps"],
            "p50_us": w["p50_us"], "p90_us": w["p90_us"], "p99_us": w["p99_us"],
            "max_us": w["max_us"], "mean_us": w["mean_us"],
            "errors": {k[len("errors_"):]: w[k] for k in w if k.startswith("errors_")},
            "strict": w["strict"], "checked": w["checked"],
            "bad_status": w["bad_status"], "bad_body": w["bad_body"],
        })
        if w["requests"] <= 0:
            rec["problems"].append("no request completed")
        for k, v in rec["errors"].items():
            if v:
                what = "responses with status >= 400" if k == "status" else f"{k} errors"
                rec["problems"].append(f"{v} {what}")
        if a.strict:
            if not w["strict"] or w["checked"] <= 0:
                rec["problems"].append("strict checking was requested but checked nothing")
            if w["bad_status"]:
                rec["problems"].append(f"{w['bad_status']} responses not exactly 200")
            if w["bad_body"]:
                rec["problems"].append(f"{w['bad_body']} 200 responses without a contact id")
    rec["cpu_busy"] = cpu_busy(a.cpu_before, a.cpu_after)
    if a.exit_code != 0:
        rec["problems"].append(f"wrk exited {a.exit_code}")
    rec["valid"] = not rec["problems"]
    append(a.out, rec)
    print_one(rec)
    return 0


# ----------------------------------------------------------------------------------------- pgbench

def cmd_pgbench(a):
    text = sys.stdin.read()
    rec = {"kind": "pgbench", "name": a.name, "role": a.role, "round": a.round, "mode": a.mode, "script": a.script,
           "exit_code": a.exit_code, "valid": False, "problems": []}

    def grab(pattern, conv=float):
        m = re.search(pattern, text, re.M)
        return conv(m.group(1)) if m else None

    rec["tps"] = grab(r"^tps = ([0-9.]+) \(without initial connection time\)")
    rec["processed"] = grab(r"^number of transactions actually processed: (\d+)", int)
    rec["failed"] = grab(r"^number of failed transactions: (\d+)", int)
    rec["latency_avg_ms"] = grab(r"^latency average = ([0-9.]+) ms")
    rec["duration_s"] = grab(r"^duration: (\d+) s", int)

    files = sorted(glob.glob(glob.escape(a.log_prefix) + ".*"))
    lat = []
    not_done = 0
    for path in files:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                try:
                    lat.append(int(parts[2]))
                except ValueError:  # "failed" / "skipped" instead of a latency
                    not_done += 1
    lat.sort()
    rec["logged"] = len(lat)
    rec["p50_us"] = percentile(lat, 50)
    rec["p90_us"] = percentile(lat, 90)
    rec["p99_us"] = percentile(lat, 99)
    rec["max_us"] = lat[-1] if lat else None
    rec["rps"] = rec["tps"]
    rec["cpu_busy"] = cpu_busy(a.cpu_before, a.cpu_after)

    if a.exit_code != 0:
        rec["problems"].append(f"pgbench exited {a.exit_code} (a client aborted: see its output)")
    if "error" in text.lower() and "aborted" in text.lower():
        rec["problems"].append("pgbench reported aborted clients")
    if rec["tps"] is None or not rec["processed"]:
        rec["problems"].append("no transaction processed")
    if rec["failed"]:
        rec["problems"].append(f"{rec['failed']} failed transactions")
    if not_done:
        rec["problems"].append(f"{not_done} failed/skipped transactions in the log")
    if a.role == "check":
        pass  # check runs are not logged: they only have to finish without an aborted client
    elif not files or not lat:
        rec["problems"].append(f"no pgbench transaction log at {a.log_prefix}.*")
    elif rec["processed"] and len(lat) != rec["processed"]:
        rec["problems"].append(f"log holds {len(lat)} transactions, pgbench counted {rec['processed']}")
    rec["valid"] = not rec["problems"]
    append(a.out, rec)
    print_one(rec)
    return 0


# --------------------------------------------------------------------------------------------- RSS

def status_kb(text, key):
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def cmd_rss(a):
    rec = {"kind": "rss", "name": f"server RSS, {a.connections} connections",
           "connections": a.connections, "valid": False, "problems": []}
    idle = open(a.idle_status).read() if os.path.exists(a.idle_status) else ""
    after = open(a.after_status).read() if os.path.exists(a.after_status) else ""
    rec["idle_rss_kb"] = status_kb(idle, "VmRSS")
    rec["idle_hwm_kb"] = status_kb(idle, "VmHWM")
    rec["after_rss_kb"] = status_kb(after, "VmRSS")
    rec["hwm_kb"] = status_kb(after, "VmHWM")
    samples = []
    if os.path.exists(a.load_samples):
        for line in open(a.load_samples):
            line = line.strip()
            if line.isdigit():
                samples.append(int(line))
    rec["load_samples"] = len(samples)
    rec["load_peak_rss_kb"] = max(samples) if samples else None
    rec["load_median_rss_kb"] = sorted(samples)[len(samples) // 2] if samples else None
    if rec["idle_rss_kb"] is None:
        rec["problems"].append("no idle VmRSS")
    if rec["hwm_kb"] is None:
        rec["problems"].append("no VmHWM after the load (did the server die?)")
    if not samples:
        rec["problems"].append("no RSS sample during the load")
    if a.wrk_stdout:
        text = open(a.wrk_stdout).read() if os.path.exists(a.wrk_stdout) else ""
        m = re.search(r"^TESSERA_WRK (\{.*\})\s*$", text, re.M)
        if not m:
            rec["problems"].append("no TESSERA_WRK line from the load run")
        else:
            w = json.loads(m.group(1))
            rec.update({"rps": w["rps"], "p50_us": w["p50_us"], "p99_us": w["p99_us"],
                        "requests": w["requests"]})
            errs = {k[len("errors_"):]: w[k] for k in w if k.startswith("errors_") and w[k]}
            if errs:
                rec["problems"].append(f"load run errors: {errs}")
            if w["requests"] <= 0:
                rec["problems"].append("load run completed no request")
        if a.wrk_exit_code:
            rec["problems"].append(f"wrk exited {a.wrk_exit_code}")
    rec["valid"] = not rec["problems"]
    append(a.out, rec)
    print_one(rec)
    return 0


# ---------------------------------------------------------------------------------------- render

def fmt_us(v):
    if v is None:
        return "-"
    return f"{v / 1000.0:.2f} ms"


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_mb(kb):
    return "-" if kb is None else f"{kb / 1024.0:.1f} MB"


def print_one(rec):
    state = "valid" if rec["valid"] else "INVALID: " + "; ".join(rec["problems"])
    if rec["kind"] == "rss":
        print(f"  {rec['name']}: idle {fmt_mb(rec.get('idle_rss_kb'))}, peak under load "
              f"{fmt_mb(rec.get('load_peak_rss_kb'))}, VmHWM {fmt_mb(rec.get('hwm_kb'))} ({state})")
    else:
        print(f"  {rec.get('role', 'measure')} {rec['name']}: {fmt_rate(rec.get('rps'))} req/s, p50 {fmt_us(rec.get('p50_us'))}, "
              f"p99 {fmt_us(rec.get('p99_us'))} ({state})")


def table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def cmd_render(a):
    recs = [json.loads(l) for l in open(a.results) if l.strip()]
    meta = json.load(open(a.meta))
    checks = [r for r in recs if r.get("role") == "check"]
    recs_measured = [r for r in recs if r.get("role") != "check"]
    http = [r for r in recs_measured if r["kind"] == "http"]
    pgb = [r for r in recs_measured if r["kind"] == "pgbench"]
    rss = [r for r in recs_measured if r["kind"] == "rss"]

    # Runs are grouped by name; with several rounds the table shows the run with the median
    # req/s, and each ratio is the median of the per-round ratios (server and baseline measured
    # minutes apart in the same round), which resists the drift of a noisy machine better than a
    # ratio of two numbers taken far apart.
    def groups(records):
        out = {}
        for r in records:
            out.setdefault(r["name"], []).append(r)
        return out

    def median_run(runs):
        ranked = sorted(runs, key=lambda r: r.get("rps") or 0)
        return ranked[(len(ranked) - 1) // 2]

    def median(values):
        v = sorted(values)
        n = len(v)
        return None if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)

    http_g, pgb_g = groups(http), groups(pgb)
    rounds = max([r.get("round", 1) for r in http + pgb] or [1])
    server_runs = next(iter(http_g.values()), [])
    server = median_run(server_runs) if server_runs else None

    rows = []
    for name, runs in list(http_g.items()) + list(pgb_g.items()):
        r = median_run(runs)
        what = name if r["kind"] == "http" else f"{name} (-M {r['mode']})"
        per_round = " / ".join(fmt_rate(x.get("rps")) for x in sorted(runs, key=lambda x: x.get("round", 1)))
        rows.append([what, fmt_rate(r.get("rps")), per_round, fmt_us(r.get("p50_us")),
                     fmt_us(r.get("p99_us")), fmt_busy(r.get("cpu_busy")),
                     "yes" if all(x["valid"] for x in runs) else "NO"])
    main_table = table(["run", "req/s (median)", "req/s per round", "p50", "p99", "CPU busy", "valid"], rows)

    ratio_rows = []
    goal = meta.get("ratio_goal", 0.8)
    by_round = {r.get("round", 1): r for r in server_runs}
    for name, runs in pgb_g.items():
        ratios = []
        for r in sorted(runs, key=lambda x: x.get("round", 1)):
            srv = by_round.get(r.get("round", 1))
            if srv and srv.get("rps") and r.get("rps"):
                ratios.append(srv["rps"] / r["rps"])
        if not ratios:
            continue
        ratio = median(ratios)
        both_valid = all(x["valid"] for x in runs) and all(x["valid"] for x in server_runs)
        verdict = ("meets" if ratio >= goal else "misses") + f" the {goal}x goal"
        if name not in meta.get("goal_baselines", []):
            verdict = "reference"
        if not both_valid:
            verdict = "INVALID (a run had errors)"
        ratio_rows.append([f"server / {name}", f"{ratio:.2f}x",
                           " / ".join(f"{x:.2f}x" for x in ratios), verdict])
    ratio_table = table(["ratio (req/s)", "median", "per round", "verdict"], ratio_rows) if ratio_rows else ""

    rss_rows = []
    rss_goal_mb = meta.get("rss_goal_mb", 100)
    for r in rss:
        hwm = r.get("hwm_kb")
        verdict = "-"
        if hwm is not None:
            verdict = ("meets" if hwm / 1024.0 <= rss_goal_mb else "misses") + f" the {rss_goal_mb} MB goal"
        if not r["valid"]:
            verdict = "INVALID: " + "; ".join(r["problems"])
        rss_rows.append([f"{r['connections']} connections", fmt_mb(r.get("idle_rss_kb")),
                         fmt_mb(r.get("load_peak_rss_kb")), fmt_mb(hwm),
                         fmt_rate(r.get("rps")), fmt_us(r.get("p99_us")), verdict])
    rss_table = table(["server RSS", "idle VmRSS", "peak VmRSS under load", "VmHWM",
                       "req/s", "p99", "verdict"], rss_rows) if rss_rows else ""

    invalid = [r for r in recs if not r["valid"]]
    now = datetime.now(timezone.utc)
    setup_lines = [
        f"- commit: {meta.get('commit')}",
        f"- machine: {meta.get('cpu')}, {meta.get('cores')} cores, {meta.get('mem')}; {meta.get('kernel')}",
        f"- data: {meta.get('tenants')} tenants x {meta.get('contacts')} contacts; "
        f"uniformly random tenant and contact per request/transaction",
        f"- load: {meta.get('concurrency')} connections, {meta.get('threads')} load threads, "
        f"{meta.get('duration')} s measured after {meta.get('warmup')} s warm-up, closed loop, "
        f"{rounds} round(s) of every run interleaved "
        f"(wrk {meta.get('wrk_version')}, pgbench {meta.get('pgbench_version')})",
        f"- server: pool_size {meta.get('pool_size')}, {meta.get('server_env')}",
        f"- pinning: {meta.get('pinning')}",
        f"- PostgreSQL: {meta.get('pg_version')} private cluster ({meta.get('pg_settings')})",
    ]
    if checks:
        ok = sum(1 for r in checks if r["valid"])
        setup_lines.append(f"- correctness checks (warm-up runs that verify every answer): "
                           f"{ok} of {len(checks)} passed")
    md = [f"## {now.strftime('%Y-%m-%d %H:%M:%S UTC')}", ""] + setup_lines + ["", main_table, ""]
    if ratio_table:
        md += [ratio_table, ""]
    if rss_table:
        md += [rss_table, ""]
    if invalid:
        md.append("**INVALID RUNS — do not quote these numbers:**")
        for r in invalid:
            md.append(f"- {r['name']}: " + "; ".join(r["problems"]))
        md.append("")
    text = "\n".join(md)
    print()
    print(text)
    if a.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(a.markdown)), exist_ok=True)
        new = not os.path.exists(a.markdown)
        with open(a.markdown, "a") as f:
            if new:
                f.write(f"# Tessera benchmark results, {now.strftime('%Y-%m-%d')}\n\n"
                        "Written by bench/run.sh; see bench/README.md for the method.\n\n")
            f.write(text + "\n")
        print(f"appended to {a.markdown}")
    return 1 if invalid else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wrk")
    w.add_argument("--name", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--exit-code", type=int, default=0)
    w.add_argument("--strict", action="store_true")
    w.add_argument("--role", choices=["measure", "check"], default="measure")
    w.add_argument("--cpu-before", default="")
    w.add_argument("--cpu-after", default="")
    w.add_argument("--round", type=int, default=1)
    g = sub.add_parser("pgbench")
    g.add_argument("--name", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--log-prefix", required=True)
    g.add_argument("--exit-code", type=int, default=0)
    g.add_argument("--mode", default="")
    g.add_argument("--script", default="")
    g.add_argument("--role", choices=["measure", "check"], default="measure")
    g.add_argument("--cpu-before", default="")
    g.add_argument("--cpu-after", default="")
    g.add_argument("--round", type=int, default=1)
    r = sub.add_parser("rss")
    r.add_argument("--out", required=True)
    r.add_argument("--idle-status", required=True)
    r.add_argument("--load-samples", required=True)
    r.add_argument("--after-status", required=True)
    r.add_argument("--connections", type=int, required=True)
    r.add_argument("--wrk-stdout", default="")
    r.add_argument("--wrk-exit-code", type=int, default=0)
    d = sub.add_parser("render")
    d.add_argument("--results", required=True)
    d.add_argument("--meta", required=True)
    d.add_argument("--markdown", default="")
    a = p.parse_args()
    return {"wrk": cmd_wrk, "pgbench": cmd_pgbench, "rss": cmd_rss, "render": cmd_render}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
