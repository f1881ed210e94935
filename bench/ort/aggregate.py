#!/usr/bin/env python3
"""Aggregate the rounds of compare.sh into a table and a JSON file (standard library only).

    python3 bench/ort/aggregate.py RUNDIR [--json FILE]

RUNDIR/<scale>/round<r>.<c|ort>.json are the runner outputs and .time the GNU time -v
reports; RUNDIR/<scale>/reference.json the twin's chunk; RUNDIR/env.json the machine.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics


TOL = 1e-4  # max |chunk - twin float64| allowed for either runner


def peak_rss_mb(path):
    with open(path) as f:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
    return int(m.group(1)) / 1024.0 if m else float("nan")


def flat(a):
    return [x for row in a for x in row]


def maxdiff(a, b):
    return max(abs(x - y) for x, y in zip(flat(a), flat(b)))


def summary(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def scale_result(d):
    ref = json.load(open(os.path.join(d, "reference.json")))
    ref64 = ref.get("twin64_actions")
    rounds = sorted({int(re.search(r"round(\d+)", p).group(1))
                     for p in glob.glob(os.path.join(d, "round*.c.json"))})
    per = {"c": [], "ort": []}
    for r in rounds:
        for who in ("c", "ort"):
            p = os.path.join(d, f"round{r}.{who}.json")
            if not os.path.exists(p):
                continue
            j = json.load(open(p))
            j["peak_rss_mb"] = peak_rss_mb(os.path.join(d, f"round{r}.{who}.time"))
            j["round"] = r
            lp = os.path.join(d, f"round{r}.{who}.load")
            j["loadavg"] = float(open(lp).read().split()[0]) if os.path.exists(lp) else float("nan")
            per[who].append(j)
    paired = [(c, o) for c in per["c"] for o in per["ort"] if c["round"] == o["round"]]
    out = {"rounds": len(paired), "prefix_len": ref["prefix_len"]}
    for who in ("c", "ort"):
        rs = per[who]
        out[who] = {k: summary([r[k] for r in rs])
                    for k in ("prefix_ms", "flow_step_ms", "sample_ms", "full_ms", "full_cpu_ms",
                              "peak_rss_mb", "load_ms", "loadavg")}
        out[who]["full_ms_best"] = min(min(r["full_ms_all"]) for r in rs)
        out[who]["iters_per_round"] = rs[0]["iters"]
        out[who]["warmup_per_round"] = rs[0]["warmup"]
        if ref64:
            out[who]["max_abs_vs_twin64"] = max(maxdiff(r["actions"], ref64) for r in rs)
        out[who]["max_abs_vs_twin32"] = max(maxdiff(r["actions"], ref["twin32_actions"]) for r in rs)
        for k in ("ort_version", "blas_core", "pack_supported", "pack_scope", "matrix_dtype",
                  "session_options", "node"):
            if k in rs[0]:
                out[who][k] = rs[0][k]
        if who == "ort":
            out[who]["noop_run_ms"] = summary([r["noop_run_ms"] for r in rs if r.get("noop_run_ms")
                                               is not None] or [float("nan")])
            out[who]["flow_step_run_ms"] = summary([r["flow_step_run_ms"] for r in rs])
    out["c_vs_ort_max_abs"] = max(maxdiff(c["actions"], o["actions"]) for c, o in paired)
    # speed-up of C = ORT time / C time, per round (both processes of the same round)
    out["speedup_c_over_ort"] = {k: summary([o[k] / c[k] for c, o in paired])
                                 for k in ("prefix_ms", "flow_step_ms", "full_ms", "full_cpu_ms")}
    out["speedup_c_over_ort"]["full_ms_best"] = out["ort"]["full_ms_best"] / out["c"]["full_ms_best"]
    out["rss_ratio_c_over_ort"] = summary([c["peak_rss_mb"] / o["peak_rss_mb"] for c, o in paired])
    out["twin_self_check"] = {k: v for k, v in ref.items() if k.endswith("max_abs")}
    out["raw"] = per
    return out


def fmt(s, f="{:.3f}"):
    return f"{f.format(s['median'])} ({f.format(s['min'])}-{f.format(s['max'])})"


def table(name, r):
    c, o, sp = r["c"], r["ort"], r["speedup_c_over_ort"]
    lines = [f"### {name}  (prefix S = {r['prefix_len']}, {r['rounds']} rounds x "
             f"{c['iters_per_round']} timed inferences per process, median (min-max over rounds))",
             "",
             "| | C engine | ORT | C speed-up (ORT/C) |",
             "|---|---|---|---|"]
    for k, label in (("prefix_ms", "prefix (ms)"), ("flow_step_ms", "one flow step (ms)"),
                     ("full_ms", "full inference (ms)")):
        lines.append(f"| {label} | {fmt(c[k])} | {fmt(o[k])} | {fmt(sp[k], '{:.2f}x')} |")
    lines.append(f"| peak RSS (MiB) | {fmt(c['peak_rss_mb'], '{:.0f}')} | "
                 f"{fmt(o['peak_rss_mb'], '{:.0f}')} | C/ORT = {fmt(r['rss_ratio_c_over_ort'], '{:.2f}')} |")
    lines.append(f"| full inference, process CPU time (ms) | {fmt(c['full_cpu_ms'])} | {fmt(o['full_cpu_ms'])} | "
                 f"{fmt(sp['full_cpu_ms'], '{:.2f}x')} |")
    lines.append(f"| full inference, best single run (ms) | {c['full_ms_best']:.3f} | {o['full_ms_best']:.3f} | "
                 f"{sp['full_ms_best']:.2f}x |")
    d64 = lambda x: f"{x.get('max_abs_vs_twin64', float('nan')):.2e}"
    lines.append(f"| max abs diff chunk vs twin (float64) | {d64(c)} | {d64(o)} | C vs ORT {r['c_vs_ort_max_abs']:.2e} |")
    lines.append(f"| 1-min load average before the process | {fmt(c['loadavg'], '{:.2f}')} | "
                 f"{fmt(o['loadavg'], '{:.2f}')} | |")
    lines.append(f"| load + session setup (ms) | {fmt(c['load_ms'], '{:.0f}')} | {fmt(o['load_ms'], '{:.0f}')} | |")
    lines.append("")
    lines.append(f"ORT fixed cost of one session run through the Node binding (1-node graph): "
                 f"{o['noop_run_ms']['median'] * 1e3:.0f} us; one step session run incl. host Euler "
                 f"update: {fmt(o['flow_step_run_ms'])} ms")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir")
    ap.add_argument("--json")
    a = ap.parse_args()
    env = json.load(open(os.path.join(a.rundir, "env.json")))
    res = {"env": env, "scales": {}}
    for name in ("default", "smolvla"):
        d = os.path.join(a.rundir, name)
        if os.path.isdir(d) and glob.glob(os.path.join(d, "round*.c.json")):
            res["scales"][name] = scale_result(d)
    print(f"\nC engine vs ONNX Runtime {env.get('ort_version')} (CPU EP), one thread each, "
          f"{env.get('date')}, {env.get('cpu')}\n")
    for name, r in res["scales"].items():
        print(table(name, r))
        print()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"JSON: {a.json}")
    bad = [(n, w) for n, r in res["scales"].items() for w in ("c", "ort")
           if not r[w].get("max_abs_vs_twin64", 0.0) < TOL]
    for n, w in bad:
        print(f"FAIL: {n}: {w} chunk differs from the float64 twin by "
              f"{res['scales'][n][w].get('max_abs_vs_twin64')} (bound {TOL})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
