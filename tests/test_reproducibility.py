"""Same inputs, same numbers: two fresh runs with the same parameters, into two empty stores, at the same time and beside
a CPU-bound process — one with the phases on one shared kernel (the default), one with a fresh kernel per phase — record
identical data versions, metrics and decisions."""
import os, subprocess, sys
from pathlib import Path

import pytest

from conftest import CLI

SMALL = ('-p', 'arch=mlp', '-p', 'epochs=4', '-p', 'iteration_epochs=2', '-p', 'second_batch=false')


def _store(runs: Path):
    from mlops_nb.core.store import Store
    return Store(f"sqlite:///{runs/'mlmd.sqlite'}")


@pytest.mark.slow
def test_two_fresh_runs_with_the_same_parameters_record_the_same_numbers_on_a_busy_machine_shared_kernel_or_not(tmp_path):
    burner = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
    try:
        procs = []
        for k in (0, 1):  # both at once on two cores, and a third process spinning: every run shares its CPU
            env = {**os.environ, 'MLOPS_NB_RUNS': str(tmp_path/f'store{k}'/'runs')}
            env.pop('MLOPS_NB_STORE', None)
            kernel = ['--kernel-per-phase'] if k else []   # what one phase leaves in a shared kernel must not change the next's numbers
            procs.append(subprocess.Popen([str(CLI), 'run', '--run-id', 'same', '--phases', 'scoping,data,modeling', *SMALL,
                                           '--no-progress', *kernel], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        burner.kill(); burner.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    import json
    kernels = [json.loads((tmp_path/f'store{k}'/'runs'/'same'/'summary.json').read_text())['kernel'] for k in (0, 1)]
    assert kernels == ['shared', 'per-phase']
    from mlops_nb.modeling.phase import experiments
    stores = [_store(tmp_path/f'store{k}'/'runs') for k in (0, 1)]
    tables = [experiments(st, 'same').drop(columns=['id']).reset_index(drop=True) for st in stores]
    assert len(tables[0]) == 5  # four data-centric iterations and the final model
    metric_cols = [c for c in tables[0].columns if c in ('accuracy', 'macro_f1', 'error_rate', 'worst_class_error', 'balanced_accuracy')]
    assert len(metric_cols) == 5
    assert tables[0].equals(tables[1]), (tables[0][metric_cols], tables[1][metric_cols])
    versions = [[a.get('version') for a in st.artifacts('Examples', run_id='same')] for st in stores]
    assert versions[0] == versions[1]
    blessings = [[(a.get('blessed'), a.get('reasons')) for a in st.artifacts('ModelBlessing', run_id='same')] for st in stores]
    assert blessings[0] == blessings[1]
    envs = [{k: v for k, v in st.executions('same', 'modeling.train')[0].properties.items() if k.startswith('env_')} for st in stores]
    assert envs[0] == envs[1] and envs[0]['env_op_determinism'] == 1
