#!/usr/bin/env python3
"""Turns Google Benchmark JSON (with repetitions) into crsync's results table.

usage: report.py RESULT.json [RESULT.json ...]

For every case: the median, the spread over repetitions (min..max of real
time) and the ratio to its baseline measured in the same run. Prints a
Markdown table.
"""
import json
import statistics
import sys
from collections import defaultdict

# case -> (baseline case, what the ratio means)
BASELINES = {
    "BM_Insert100k/crr": "BM_Insert100k/plain",
    "BM_OneRowTxns5k/crr": "BM_OneRowTxns5k/plain",
    "BM_Update100k/crr": "BM_Update100k/plain",
    "BM_DbSize/crr": "BM_DbSize/plain",
    "BM_ReadChanges_sql": "BM_ReadChanges_plain",
    "BM_ReadChanges_reader": "BM_ReadChanges_plain",
    "BM_ReadChanges_stream": "BM_ReadChanges_plain",
    "BM_ReadChanges_after_updates": "BM_ReadChanges_sql",
    "RunMerge/empty_sql": "RunMerge/empty_plain_upsert",
    "RunMerge/empty_applier": "RunMerge/empty_plain_upsert",
    "RunMerge/empty_session": "RunMerge/empty_plain_upsert",
    "RunMerge/halflose_sql": "RunMerge/empty_plain_upsert",
    "RunMerge/halflose_applier": "RunMerge/empty_plain_upsert",
    "BM_VfsOneRowTxns5k/crsync_vfs": "BM_VfsOneRowTxns5k/default_vfs",
    "BM_AlterAddColumn/crr": "BM_AlterAddColumn/plain",
    "BM_AlterRenameColumn/crr": "BM_AlterRenameColumn/plain_copy",
    "BM_AsCrr1M/crr": "BM_AsCrr1M/plain_copy",
    "BM_Backlog/sidecars": "BM_Backlog/applier",
}

# Google Benchmark's own fields; every other number in a run is a user
# counter (latency percentiles, peak RSS...), reported by its median.
STANDARD = {"family_index", "per_family_instance_index", "repetitions", "repetition_index",
            "threads", "iterations", "real_time", "cpu_time", "items_per_second",
            "bytes_per_second", "bytes", "time_unit"}


def case_name(b):
    name = b.get("run_name") or b["name"]
    for suffix in ("/iterations:1", "/real_time", "/manual_time"):
        name = name.replace(suffix, "")
    return name


def main(paths):
    runs = defaultdict(list)  # case -> list of (real_time ms, items/s, bytes)
    counters = defaultdict(lambda: defaultdict(list))  # case -> counter -> values
    context = None
    for path in paths:
        data = json.load(open(path, encoding="utf-8"))
        context = context or data.get("context", {})
        for b in data["benchmarks"]:
            if b.get("run_type") == "aggregate":
                continue
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
            runs[case_name(b)].append(
                (b["real_time"] * scale, b.get("items_per_second"), b.get("bytes")))
            for k, v in b.items():
                if k not in STANDARD and isinstance(v, (int, float)):
                    counters[case_name(b)][k].append(v)
    med = {}
    for case, rs in runs.items():
        med[case] = (statistics.median(r[0] for r in rs),
                     statistics.median(r[1] for r in rs) if rs[0][1] else None,
                     statistics.median(r[2] for r in rs) if rs[0][2] else None)
    print(f"machine: {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz, "
          f"{context.get('date')}; {len(next(iter(runs.values()), []))} repetitions\n")
    print("| case | median | spread (min..max) | throughput | ratio to baseline | counters (median) |")
    print("|---|---|---|---|---|---|")
    for case in sorted(runs):
        t, ips, size = med[case]
        times = [r[0] for r in runs[case]]
        spread = f"{min(times):.1f}..{max(times):.1f} ms"
        thr = f"{ips / 1e6:.3f} M/s" if ips else ""
        value = f"{size / 1e6:.2f} MB" if size else f"{t:.1f} ms"
        ratio = ""
        base = BASELINES.get(case)
        if base in med:
            bt, bips, bsize = med[base]
            if size and bsize:
                ratio = f"{size / bsize:.2f}x size of {base}"
            elif case.startswith("BM_ReadChanges"):
                ratio = f"{bips / ips:.1f}x slower than {base}" if ips and bips else ""
            else:
                ratio = f"{t / bt:.2f}x {base}"
        extra = ", ".join(f"{k} {statistics.median(v):.3g}"
                          for k, v in sorted(counters[case].items()))
        print(f"| {case} | {value} | {spread} | {thr} | {ratio} | {extra} |")


if __name__ == "__main__":
    main(sys.argv[1:])
