"""Benchmark: the data phase at scale.

1. Statistics on N rows x 65 numeric columns (8x8 images) and on N*64/784 rows x 785 columns (28x28, the same number of
   values): TFDV's own `generate_statistics_from_dataframe` against our `mlops_nb.data.validation.statistics` on the same
   frame (rows/s, and our overhead in %).
2. The Apache Beam path (`statistics_from_csv`, DirectRunner with 2 worker processes) on a large CSV file,
   against reading that file with pandas and using the in-memory path: time and peak memory of each, each in
   its own process.
3. The data rules on 100,000 8x8 images and on 100,000 * 64/784 28x28 images (vectorised): images/s.

    .venv/bin/python bench/data_speed.py [--rows 1000000] [--beam-rows 2000000] [--repeat 3]
"""
from __future__ import annotations
import argparse, os, statistics as st, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def frame(rows: int, seed: int = 0, pixels: int = 64) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(rng.integers(0, 17, size=(rows, pixels)), columns=[f"pixel_{i}" for i in range(pixels)])
    f['label'] = rng.integers(0, 10, rows)
    return f


def bench_stats(rows: int, repeat: int, pixels: int = 64):
    import tensorflow_data_validation as tfdv
    from mlops_nb.data.validation import statistics
    rows = rows * 64 // pixels   # the same number of values at every width
    df = frame(rows, pixels=pixels)
    tfdv.generate_statistics_from_dataframe(df.head(1000))  # warm up
    raw, ours = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine state
        t0 = time.perf_counter(); tfdv.generate_statistics_from_dataframe(df, tfdv.StatsOptions()); raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); statistics(df); ours.append(time.perf_counter() - t0)
    r, o = st.median(raw), st.median(ours)
    print(f"statistics, {rows:,} rows x {pixels + 1} columns (median of {repeat}):")
    print(f"  TFDV generate_statistics_from_dataframe: {r:6.2f} s  {rows / r:>10,.0f} rows/s")
    print(f"  mlops_nb.data.validation.statistics:          {o:6.2f} s  {rows / o:>10,.0f} rows/s   overhead {100 * (o / r - 1):+.1f}%")


CHILD = '''
import sys, time, resource, os
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import logging; logging.disable(logging.WARNING)
mode, path, out = sys.argv[1:4]
t0 = time.perf_counter()
if mode == 'beam':
    from mlops_nb.data.validation import statistics_from_csv
    s = statistics_from_csv(path, out, workers=2)
else:
    import pandas as pd
    from mlops_nb.data.validation import statistics
    s = statistics(pd.read_csv(path))
n = s.datasets[0].num_examples
dt = time.perf_counter() - t0
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kids)
'''


def bench_beam(rows: int):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d)/'big.csv'
        t0 = time.perf_counter()
        chunk = 250_000
        for i in range(0, rows, chunk):
            frame(min(chunk, rows - i), seed=i).to_csv(path, mode='a', header=i == 0, index=False)
        print(f"Beam path: CSV of {rows:,} rows, {path.stat().st_size / 2**30:.2f} GiB (written in {time.perf_counter() - t0:.0f} s)")
        for mode in ('memory', 'beam'):
            res = subprocess.run([sys.executable, '-c', CHILD, mode, str(path), str(Path(d)/f'{mode}.stats')],
                                 capture_output=True, text=True)
            if res.returncode: print(f"  {mode}: FAILED\n{res.stderr[-2000:]}"); continue
            n, dt, rss, kids = res.stdout.split()[-4:]
            n, dt = int(n), float(dt)
            label = 'pandas read_csv + in-memory TFDV' if mode == 'memory' else 'Beam DirectRunner, 2 workers    '
            print(f"  {label}: {dt:6.1f} s  {n / dt:>9,.0f} rows/s  peak RSS {int(rss) / 2**20:.2f} GiB"
                  + (f" (+ workers {int(kids) / 2**20:.2f} GiB)" if mode == 'beam' else '') + f"  rows seen {n:,}")


def bench_rules(n: int, repeat: int, source: str = 'digits'):
    from mlops_nb.data.rules import default_rules_path, image_rule_flags, load_rules
    from mlops_nb.data.ingest import load_source, measure_scale
    ds = load_source(source)
    real = ds.frame[ds.features].to_numpy()
    scale, p = measure_scale(real), real.shape[1]
    n = n * 64 // p   # the same number of values at every size
    rng = np.random.default_rng(0)
    X = np.clip(real[rng.integers(0, len(real), n)] + rng.integers(-1, 2, size=(n, p)) * scale / 16, 0, scale)  # real images, jittered
    rules = load_rules(default_rules_path(source))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter(); flags = image_rule_flags(X, rules, scale=scale); ts.append(time.perf_counter() - t0)
    t = st.median(ts)
    print(f"data rules on {n:,} {source} images of {p} pixels (all 6 rules incl. duplicates): {t:.3f} s  {n / t:,.0f} images/s, "
          f"{n * p / t / 1e6:,.0f} M pixels/s; flagged: {flags.sum().to_dict()}")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=1_000_000)
    ap.add_argument('--beam-rows', type=int, default=2_000_000)
    ap.add_argument('--images', type=int, default=100_000)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--only', choices=['rules', 'stats', 'beam'], help='run one part only')
    a = ap.parse_args()
    if a.only in (None, 'rules'):
        for source in ('digits', 'mnist'): bench_rules(a.images, a.repeat, source)
    if a.only in (None, 'stats'):
        for pixels in (64, 784): bench_stats(a.rows, a.repeat, pixels)
    if a.only not in (None, 'beam'): sys.exit(0)
    if a.beam_rows: bench_beam(a.beam_rows)
