"""Monitoring speed: a skew/drift check on a window of 10,000 logged requests (TFDV statistics of the window,
drift against the previous window and skew against training, with the schema's comparators), excluding imports.
Target of the monitoring issue: <= 2 s per window. (Metrics overhead is measured side by side in serving_speed.py, server (e).)

    python bench/monitoring_speed.py [--rows 10000] [--repeats 3]
"""
from __future__ import annotations
import argparse, os, tempfile, time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, default=10_000, help='logged requests per window (default 10000)')
    ap.add_argument('--repeats', type=int, default=3, help='windows to time (default 3); the median is reported')
    args = ap.parse_args()
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    t = time.perf_counter()
    import pandas as pd
    from mlops_nb.monitoring.drift import drift_skew, informative_features, perturb, window_frame
    from mlops_nb.data.ingest import PIXELS, load_digits_dataset
    from mlops_nb.serving.predlog import PredictionLog, prediction_row, read_log
    from mlops_nb.data.validation import curated_schema, statistics
    print(f"imports {time.perf_counter() - t:.1f} s (not counted)")
    digits = load_digits_dataset().frame.sample(frac=1, random_state=0)
    train = digits.iloc[:1200]
    train_stats = statistics(train[PIXELS + ['label']], 'train')
    schema = curated_schema(train_stats, PIXELS, label_domain=list(range(10)))
    judged = informative_features(train_stats)
    # a real prediction log on disk: windows of logged requests, the later ones with growing rotation
    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp())/'predictions.sqlite'
    log = PredictionLog(path)
    X, y = digits[PIXELS].to_numpy(np.float32), digits['label'].to_numpy()
    for w in range(args.repeats + 1):
        idx = rng.integers(0, len(X), args.rows)
        Xw, _ = perturb(X[idx], y[idx], 'rotation', 0.2 * w, rng)
        for i in range(args.rows):
            log.add('predictions', prediction_row(f"w{w}-{i}", 0, f"user-{i % 300}", 'digits', 'single', 'stable', 'ok', '', 1,
                                                  int(y[idx[i]]), None, 0.5, Xw[i], ts=1000.0 * w + i * 1e-3))
    log.close()
    times, prev = [], None
    for w in range(args.repeats + 1):
        t = time.perf_counter()
        window = read_log(path, since=1000.0 * w, until=1000.0 * (w + 1), features=True)
        t_read = time.perf_counter() - t
        stats = statistics(window_frame(window), f'window {w}')
        ds = drift_skew(stats, schema, previous=prev, training=train_stats, features=judged)
        dt = time.perf_counter() - t
        prev = stats
        if w: times.append(dt)   # the first window has no previous one to drift from
        print(f"window {w}: {len(window):,} requests, read {t_read:.2f} s, total {dt:.2f} s; "
              f"skew breached {int(ds.loc[ds.kind == 'skew', 'breached'].sum())}, drift breached {int(ds.loc[ds.kind == 'drift', 'breached'].sum())}", flush=True)
    print(f"\nskew + drift check of a {args.rows:,}-request window: median {np.median(times):.2f} s (target <= 2 s)")


if __name__ == '__main__':
    main()
