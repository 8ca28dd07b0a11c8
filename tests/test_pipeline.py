"""The pipeline from the command line: a run, bad parameters, plain papermill, lineage queries."""
import json, subprocess, sys
from pathlib import Path

import yaml

from conftest import ROOT, cli


def test_run_scoping_writes_its_own_folder(runs):
    before = sorted(p.name for p in (ROOT/'nbs').iterdir())
    out = cli('run', '--phases', 'scoping', '--run-id', 'r1', '-p', 'target_error_rate=0.025', '--no-progress')
    assert out.returncode == 0, out.stderr
    assert 'scoping' in out.stdout and 'COMPLETE' in out.stdout and str(runs/'r1') in out.stdout
    folder = runs/'r1'
    assert (folder/'01_scoping.ipynb').is_file()
    assert out.stderr == '' and (folder/'01_scoping.stderr.log').is_file()   # a quiet terminal: the kernel's own output goes to the run folder
    assert sorted(p.name for p in (ROOT/'nbs').iterdir()) == before  # nothing executed lands in nbs/
    params = yaml.safe_load((folder/'params.yaml').read_text())
    assert params['parameters']['target_error_rate'] == 0.025 and params['phases'] == ['scoping']
    summary = json.loads((folder/'summary.json').read_text())
    assert summary['status'] == 'COMPLETE'
    [ph] = summary['phases']
    assert ph['status'] == 'COMPLETE' and ph['seconds'] > 0
    assert {a['type'] for a in ph['artifacts']} == {'ScopingCard', 'Baseline'}
    card = json.loads((Path(next(a['uri'] for a in ph['artifacts'] if a['type'] == 'ScopingCard'))/'card.json').read_text())
    assert card['targets']['max_error_rate'] == 0.025
    assert (folder/'scoping'/'figures'/'class_counts.png').is_file()

    # the store knows the run, its execution and code version, and the lineage of the card
    from mlops_nb.core.store import Store
    st = Store()
    [ex] = st.executions('r1')
    assert ex.state == 'COMPLETE' and ex.parameters['target_error_rate'] == 0.025
    assert ex.get('git_commit') and ex.get('notebook_hash') and ex.get('executed_notebook') == str(folder/'01_scoping.ipynb')
    lin = cli('lineage', 'ScopingCard@r1')
    assert lin.returncode == 0 and 'scoping execution' in lin.stdout and 'target_error_rate=0.025' in lin.stdout
    assert 'r1' in cli('runs').stdout
    assert 'ScopingCard' in cli('artifacts', '--run', 'r1').stdout
    down = cli('lineage', 'ScopingCard@r1', '--down', '--plot', runs/'g.png')
    assert down.returncode == 0 and (runs/'g.png').stat().st_size > 1000

    # the same run id again is refused; the same content in a new run is found, not duplicated
    again = cli('run', '--phases', 'scoping', '--run-id', 'r1')
    assert again.returncode == 2 and "already exists" in again.stderr
    assert cli('run', '--phases', 'scoping', '--run-id', 'r2', '-p', 'target_error_rate=0.025').returncode == 0
    assert len(st.artifacts('ScopingCard')) == 1 and len(st.artifacts('Baseline')) == 4


def test_bad_parameters_are_refused_before_any_work(runs):
    cases = {('-p', 'sed=3'): "unknown parameter 'sed' (-p). Did you mean 'seed'? Valid parameters:",
             ('-p', 'seed=three'): "parameter 'seed' (-p) expects int, got 'three'",
             ('-p', 'target_error_rate=1.5'): "out of range [-1, 1]",
             ('-p', 'run_id=x'): "set by the runner",
             ('--phases', 'scopping'): "unknown phase 'scopping'; phases: scoping",
             ('--phases', ',,,'): "--phases ',,,' names no phase; phases: scoping, data,",  # not an empty run
             ('--phases', ' '): "--phases ' ' names no phase; phases: scoping, data,",
             ('--config', 'missing.yaml'): "config file not found"}
    for args, msg in cases.items():
        out = cli('run', *args)
        assert out.returncode == 2, (args, out.stderr)
        assert msg in out.stderr, (args, out.stderr)
    assert not runs.exists() or not any(runs.glob('run-*'))


def test_config_file_and_overrides(runs, tmp_path):
    cfg = tmp_path/'exp.yaml'
    cfg.write_text('target_error_rate: 0.04\nseed: 3\n')
    # the scoping phase is enough to see the values arrive (the whole lifecycle runs in the pipeline fixtures of conftest)
    out = cli('run', '--config', cfg, '-p', 'seed=5', '--run-id', 'cfg', '--phases', 'scoping', '--no-progress')
    assert out.returncode == 0, out.stderr
    p = yaml.safe_load((runs/'cfg'/'params.yaml').read_text())['parameters']
    assert (p['target_error_rate'], p['seed']) == (0.04, 5)
    from mlops_nb.core.store import Store
    [x] = Store().executions('cfg', 'scoping')
    assert (x.parameters['target_error_rate'], x.parameters['seed']) == (0.04, 5)  # what the notebook ran with
    cfg.write_text('target_eror_rate: 0.04\n')
    bad = cli('run', '--config', cfg)
    assert bad.returncode == 2 and "unknown parameter 'target_eror_rate' (config)" in bad.stderr


def test_plain_papermill_runs_a_phase_alone(runs, tmp_path):
    out_nb = tmp_path/'out.ipynb'
    pm = Path(sys.executable).parent/'papermill'
    res = subprocess.run([str(pm), str(ROOT/'nbs'/'01_scoping.ipynb'), str(out_nb), '-p', 'target_error_rate', '0.02',
                          '--no-progress-bar'], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    from mlops_nb.scoping import load_card
    from mlops_nb.core.store import Store
    st = Store()
    [run] = st.list_runs()
    assert run.name.startswith('nb-')
    assert load_card(st, run.name).targets['max_error_rate'] == 0.02
    # a wrong type is refused inside the notebook too, naming the parameter
    bad = subprocess.run([str(pm), str(ROOT/'nbs'/'01_scoping.ipynb'), str(tmp_path/'bad.ipynb'), '-p', 'seed', 'x',
                          '--no-progress-bar'], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "parameter 'seed' (phase scoping) expects int" in bad.stderr


def test_params_command_lists_types_and_ranges():
    out = cli('params')
    assert out.returncode == 0
    line = next(l for l in out.stdout.splitlines() if 'target_error_rate' in l)
    assert 'float' in line and '[-1, 1]' in line and "-1: the scoping file's" in line
