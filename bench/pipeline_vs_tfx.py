"""Pipeline wall time against TFX and a plain script (issue #18), each doing the same work on the 1,797 sklearn digits.

In whole processes:
(t) a TFX 1.16 pipeline (bench/peers/tfx_pipeline.py, LocalDagRunner): CsvExampleGen -> StatisticsGen -> SchemaGen ->
    ExampleValidator -> Trainer -> Evaluator (accuracy >= 0.9) -> Pusher, in TFX's own venv (bench/peers/build_tfx.sh),
(p) one plain Python script in the project's venv (bench/peers/plain_pipeline.py): TFDV statistics, inferred schema,
    validation, the same MLP in Keras 3, the accuracy gate, a SavedModel export,
(o) ours: `mlops_nb run --phases scoping,data,modeling` with arch=mlp, 10 epochs, no early stopping, no data-centric
    iterations, no second batch, no augmentation, in a fresh runs folder and MLMD store.
The model is the same everywhere: Dense(64)-Dropout(0.1)-Dense(10), Adam 2e-3, batch 64, 10 epochs on the pixels / 16.
(o) does more than (t) and (p) (scoping checks, labels, splits into train/eval/test/serving, the model card, MLMD lineage);
(t) and (p) split 8:2 into train/eval.

The three run interleaved in every round (the order rotates), so a busy machine slows them alike; the change is reported
against the spread of the per-round ratios: a difference inside that spread is noise.
Targets of the issue: (o) <= 0.5 x (t) and <= 1.2 x (p). Also prints (o)'s seconds per phase (its summary.json).
Children's output goes to log files in the work folder, named when a child fails.

    .venv/bin/python bench/pipeline_vs_tfx.py [--rounds 3] [--workdir DIR] [--skip-tfx]
"""
from __future__ import annotations
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PYTHON = REPO / '.venv' / 'bin' / 'python'
MLOPS_NB = REPO / '.venv' / 'bin' / 'mlops_nb'
TFX_PYTHON = BENCH / 'peers' / 'tfx' / '.venv' / 'bin' / 'python'
TARGETS = dict(tfx=0.5, plain=1.2)
OUR_PARAMS = dict(arch='mlp', epochs=10, iterations='false', second_batch='false', augment_copies=0, patience=1000)
NAMES = dict(tfx='TFX 1.16 pipeline', plain='plain script', ours='mlops_nb run')


def command(kind: str, work: Path, run_id: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if k != 'MLOPS_NB_STORE'}
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    if kind == 'tfx': return [str(TFX_PYTHON), str(BENCH / 'peers' / 'tfx_pipeline.py'), str(work / run_id)], env
    if kind == 'plain': return [str(PYTHON), str(BENCH / 'peers' / 'plain_pipeline.py'), str(work / run_id)], env
    env['MLOPS_NB_RUNS'] = str(work / 'runs')
    params = [x for k, v in OUR_PARAMS.items() for x in ('-p', f"{k}={v}")]
    return [str(MLOPS_NB), 'run', '--run-id', run_id, '--phases', 'scoping,data,modeling', *params, '--no-progress'], env


def timed(kind: str, work: Path, run_id: str) -> float:
    "Wall seconds of one whole child process; its output goes to <work>/<run_id>.log."
    cmd, env = command(kind, work, run_id)
    log = work / f"{run_id}.log"
    with log.open('w') as f:
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work).returncode
        dt = time.perf_counter() - t0
    if rc: raise SystemExit(f"{NAMES[kind]} failed (exit {rc}) after {dt:.1f} s; its output: {log}")
    return dt


def check_params():
    "The parameters we set exist in `mlops_nb params` (a rename would otherwise fail late or silently)."
    out = subprocess.run([str(MLOPS_NB), 'params'], capture_output=True, text=True).stdout
    known = {line.split()[1] for line in out.splitlines()[2:] if len(line.split()) > 1}
    missing = sorted(set(OUR_PARAMS) - known)
    if missing: raise SystemExit(f"`mlops_nb params` lacks {missing}: adapt OUR_PARAMS in {__file__}")


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3, help='rounds; each runs the three once (default 3)')
    ap.add_argument('--workdir', type=Path, help='folder for runs, pipeline roots and logs (default: a new temp folder, kept)')
    ap.add_argument('--skip-tfx', action='store_true', help='compare with the plain script only')
    a = ap.parse_args()
    if a.rounds < 1: ap.error('--rounds must be at least 1')
    check_params()
    kinds = ['tfx', 'plain', 'ours']
    if a.skip_tfx: kinds.remove('tfx')
    elif not TFX_PYTHON.exists():
        print(f"TFX venv missing ({TFX_PYTHON}): run `bash {BENCH / 'peers' / 'build_tfx.sh'}` to build it; TFX skipped")
        kinds.remove('tfx')
    work = (a.workdir or Path(tempfile.mkdtemp(prefix='mlops_nb-vs-tfx-'))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}   rounds: {a.rounds}   (wall seconds of whole processes)")
    secs = {k: [] for k in kinds}
    our_ids = []
    print(f"{'round':>5}  " + '  '.join(f"{NAMES[k]:>18}" for k in kinds), flush=True)
    for r in range(a.rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for k in order:
            run_id = f"{k}-{r}"
            secs[k].append(timed(k, work, run_id))
            if k == 'ours': our_ids.append(run_id)
        print(f"{r + 1:>5}  " + '  '.join(f"{secs[k][-1]:>18.1f}" for k in kinds), flush=True)
    med = {k: statistics.median(v) for k, v in secs.items()}
    print(f"{'median':>6} " + '  '.join(f"{med[k]:>18.1f}" for k in kinds))
    print()
    for peer in [k for k in kinds if k != 'ours']:
        per_round = [o / p for o, p in zip(secs['ours'], secs[peer])]
        ratio, target = med['ours'] / med[peer], TARGETS[peer]
        verdict = 'met' if max(per_round) <= target else ('not met' if min(per_round) > target else 'inside the spread')
        print(f"ours / {peer:<5}: {ratio:.2f}x  (per-round {spread(per_round)})   target <= {target}x: {verdict}")
    print()
    phases: dict[str, list[float]] = {}
    for run_id in our_ids:
        summary = json.loads((work / 'runs' / run_id / 'summary.json').read_text())
        for ph in summary['phases']: phases.setdefault(ph['name'], []).append(ph['seconds'])
    total = [sum(v[i] for v in phases.values()) for i in range(len(our_ids))]
    print('ours per phase (median s, per-round min-max): ' + ',  '.join(
        f"{n} {statistics.median(v):.1f} ({spread(v)})" for n, v in phases.items())
        + f";  phases total {statistics.median(total):.1f}, process {med['ours']:.1f}")


if __name__ == '__main__':
    main()
