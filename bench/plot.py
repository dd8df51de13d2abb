#!/usr/bin/env python3
"""Plots throughput curves from engine_bench JSON with gnuplot.

usage: plot.py ENGINE_BENCH.json OUT_DIR

Writes OUT_DIR/rows_per_txn.png (local writes: rows/s against rows per
transaction, CRR vs plain) and OUT_DIR/merge_batch.png (merges: changes/s
against batch size, SQL vs ChangeApplier). Medians over repetitions.
"""
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict


def series(data, prefix):
    points = defaultdict(list)
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        name = (b.get("run_name") or b["name"]).replace("/real_time", "")
        if not name.startswith(prefix + "/"):
            continue
        points[int(name.rsplit("/", 1)[1])].append(b["items_per_second"])
    return sorted((x, statistics.median(v)) for x, v in points.items())


def plot(out_png, title, xlabel, ylabel, curves, workdir):
    cmds = [
        "set terminal pngcairo size 800,480 noenhanced" if has_cairo() else "set terminal png size 800,480",
        f"set output '{out_png}'",
        f"set title '{title}'",
        f"set xlabel '{xlabel}'",
        f"set ylabel '{ylabel}'",
        "set logscale x 10",
        "set grid",
        "set key left top",
    ]
    plots = []
    for label, pts in curves:
        dat = os.path.join(workdir, label.replace(" ", "_") + ".dat")
        with open(dat, "w") as f:
            for x, y in pts:
                f.write(f"{x} {y}\n")
        plots.append(f"'{dat}' using 1:2 with linespoints lw 2 title '{label}'")
    cmds.append("plot " + ", ".join(plots))
    subprocess.run(["gnuplot"], input="\n".join(cmds), text=True, check=True)


def has_cairo():
    out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (out.stdout + out.stderr)


def main(path, out_dir):
    data = json.load(open(path, encoding="utf-8"))
    os.makedirs(out_dir, exist_ok=True)
    work = os.path.join(out_dir, ".plotdata")
    os.makedirs(work, exist_ok=True)
    scale = lambda pts: [(x, y / 1e3) for x, y in pts]
    plot(os.path.join(out_dir, "rows_per_txn.png"), "Local writes vs rows per transaction",
         "rows per transaction", "thousand rows/s",
         [("plain table", scale(series(data, "BM_RowsPerTxn/plain"))),
          ("CRR (crsync)", scale(series(data, "BM_RowsPerTxn/crr")))], work)
    plot(os.path.join(out_dir, "merge_batch.png"), "Merging vs batch size",
         "changes per transaction / batch", "thousand changes/s",
         [("INSERT INTO crsql_changes", scale(series(data, "BM_MergeBatch/sql"))),
          ("ChangeApplier", scale(series(data, "BM_MergeBatch/applier")))], work)
    for f in os.listdir(work):
        os.remove(os.path.join(work, f))
    os.rmdir(work)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
