"""Benchmark: the modeling phase's speed.

1. Default training on the digits (the phase's final model: CNN, up to 40 epochs with early stopping, the train
   split plus the data phase's augmented copies), excluding the TensorFlow import: median of --repeat runs.
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
    from mlops_nb.augment import augment
    from mlops_nb.ingest import assign_splits, load_digits_dataset
    from mlops_nb.train import TrainConfig, to_images, train
    f = assign_splits(load_digits_dataset().frame, 0.15, 0.15, 0.1, seed=0)
    tr, ev = f[f.split == 'train'], f[f.split == 'eval']
    tr = pd.concat([tr, augment(tr, 'unstructured', 1, seed=0)])
    times, epochs = [], []
    for _ in range(repeat):
        _, h = train(TrainConfig(), to_images(tr), tr.label.to_numpy(), to_images(ev), ev.label.to_numpy(), progress=False)
        times.append(h['seconds']); epochs.append(len(h['loss']))
    print(f"TensorFlow+Keras import: {t_import:.1f} s")
    print(f"default training ({len(tr)} training images, CNN): median {st.median(times):.1f} s over {repeat} runs "
          f"({', '.join(f'{t:.1f}' for t in times)} s; {epochs[0]} epochs with early stopping)")


def bench_phase():
    cli = Path(sys.executable).parent/'mlops_nb'
    rid = f"bench-{int(time.time())}"
    subprocess.run([str(cli), 'run', '--run-id', rid, '--no-progress'], check=True, capture_output=True)
    summary = json.loads((Path(os.environ['MLOPS_NB_RUNS'])/rid/'summary.json').read_text())
    from mlops_nb.store import Store
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
