"""Benchmark: the modeling phase's speed.

1. Default training on the digits (the phase's final model: CNN, up to 40 epochs with early stopping, the train
   split plus the data phase's augmented copies), excluding the TensorFlow import: median of --repeat runs, with
   TensorFlow's op determinism (the default) and without it, the two taking turns; and whether repeats agree.
   Then one data-centric iteration's training (25 epochs at most) with one seed and with three, as
   `-p iteration_seeds=3` trains each iteration.
2. The modeling phase inside `mlops_nb run` (after scoping and data): its wall time, and how much of it is the
   TensorFlow import, training (final model and data-centric iterations), evaluation and export, as the phase
   records them on its execution.

    .venv/bin/python bench/modeling_speed.py [--repeat 3]
"""
from __future__ import annotations
import argparse, json, os, statistics as st, subprocess, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('MLOPS_NB_RUNS', tempfile.mkdtemp(prefix='mlops_nb-bench-'))
os.environ.pop('MLOPS_NB_STORE', None)


def bench_training(repeat: int):
    t0 = time.perf_counter()
    import tensorflow, keras  # noqa: F401
    t_import = time.perf_counter() - t0
    import pandas as pd
    from mlops_nb.data.augment import augment
    from mlops_nb.data.ingest import assign_splits, load_digits_dataset
    from mlops_nb.modeling.train import TrainConfig, to_images, train
    f = assign_splits(load_digits_dataset().frame, 0.15, 0.15, 0.1, seed=0)
    tr, ev = f[f.split == 'train'], f[f.split == 'eval']
    plain = tr
    tr = pd.concat([tr, augment(tr, 'unstructured', 1, seed=0)])
    import numpy as np
    times, epochs, losses = {True: [], False: []}, {True: [], False: []}, {True: [], False: []}
    Xtr, ytr, Xev, yev = to_images(tr), tr.label.to_numpy(), to_images(ev), ev.label.to_numpy()
    for _ in range(repeat):
        for det in (True, False):  # interleaved: a slow spell of the machine lands on both
            _, h = train(TrainConfig(deterministic=det), Xtr, ytr, Xev, yev, progress=False)
            times[det].append(h['seconds']); epochs[det].append(len(h['loss'])); losses[det].append(h['loss'])
    print(f"TensorFlow+Keras import: {t_import:.1f} s")
    for det in (True, False):
        same = all(l == losses[det][0] for l in losses[det])
        print(f"default training ({len(tr)} training images, CNN), op determinism {'on ' if det else 'off'}: median "
              f"{st.median(times[det]):.2f} s over {repeat} runs ({', '.join(f'{t:.2f}' for t in times[det])} s; "
              f"epochs {epochs[det]}; repeats {'identical' if same else 'DIFFER'})")
    ratio = st.median(times[True]) / st.median(times[False])
    print(f"  determinism costs {100 * (ratio - 1):+.1f}% of training time (median on / median off)")
    t_it = {}
    for seeds in (1, 3):
        t0 = time.perf_counter()
        for s in range(seeds): train(TrainConfig(epochs=25, seed=s), to_images(plain), plain.label.to_numpy(), Xev, yev, progress=False)
        t_it[seeds] = time.perf_counter() - t0
    print(f"one data-centric iteration's training ({len(plain)} images, at most 25 epochs): {t_it[1]:.1f} s with 1 seed, {t_it[3]:.1f} s with 3 seeds "
          f"(the phase trains four iterations: x4)")


def bench_phase():
    cli = Path(sys.executable).parent/'mlops_nb'
    rid = f"bench-{int(time.time())}"
    subprocess.run([str(cli), 'run', '--run-id', rid, '--no-progress'], check=True, capture_output=True)
    summary = json.loads((Path(os.environ['MLOPS_NB_RUNS'])/rid/'summary.json').read_text())
    from mlops_nb.core.store import Store
    ex = Store().executions(rid, 'modeling')[-1]
    wall = next(p['seconds'] for p in summary['phases'] if p['name'] == 'modeling')
    g = ex.properties.get
    print(f"modeling phase inside `mlops_nb run`: {wall:.1f} s wall (kernel start, imports, papermill and MLMD: "
          f"{wall - g('body_seconds') - g('import_seconds'):.1f} s)")
    print(f"  TensorFlow import {g('import_seconds'):.1f} s | final training {g('final_train_seconds'):.1f} s | "
          f"export (SavedModel + TFLite) {g('final_export_seconds'):.1f} s | agreement check {g('agreement_seconds'):.1f} s | "
          f"4 data-centric iterations {g('iterations_seconds'):.1f} s | rest of the body (baselines, evaluation, plots, gate) "
          f"{g('body_seconds') - g('final_train_seconds') - g('final_export_seconds') - g('agreement_seconds') - g('iterations_seconds'):.1f} s")
    print("  phases: " + ', '.join(f"{p['name']} {p['seconds']:.1f} s" for p in summary['phases']))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3)
    a = ap.parse_args()
    bench_training(a.repeat)
    bench_phase()
