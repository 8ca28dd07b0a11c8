"""A failing phase stops the run, is recorded as FAILED, and `--resume` continues without duplicates."""
import json, shutil
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from conftest import ROOT, cli

PARAMS = 'run_id: str = ""\nstore_uri: str = ""\nexecuted_notebook: str = ""\nflag: str = ""  # a file that must exist\n'


def _phase_nb(path: Path, name: str, body: list[str]):
    cells = [new_code_cell(PARAMS, metadata={'tags': ['parameters']}),
             new_code_cell(f"from pathlib import Path\nfrom mlops_nb.tracking import start_step\nstep = start_step({name!r}, globals())"),
             *map(new_code_cell, body), new_code_cell('step.finish()')]
    nb = new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}})
    nbformat.write(nb, path)


def _workspace(tmp_path, monkeypatch) -> Path:
    ws = tmp_path/'ws'
    (ws/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', ws/'settings.ini')
    shutil.copy(ROOT/'nbs'/'01_scoping.ipynb', ws/'nbs')
    _phase_nb(ws/'nbs'/'02_flaky.ipynb', 'flaky', [
        "card = step.use('ScopingCard')",
        "with step.output('File', 'partial') as out: (out.path/'a.txt').write_text('first half')",
        "if not Path(flag).exists():\n    raise RuntimeError(f'upstream file {flag} is missing')",
        "with step.output('File', 'rest') as out: (out.path/'b.txt').write_text('second half')"])
    _phase_nb(ws/'nbs'/'03_after.ipynb', 'after', [
        "step.use('File', label='rest')",
        "with step.output('File', 'final') as out: (out.path/'c.txt').write_text('done')"])
    monkeypatch.setenv('MLOPS_NB_HOME', str(ws))
    monkeypatch.setenv('MLOPS_NB_RUNS', str(ws/'runs'))
    monkeypatch.delenv('MLOPS_NB_STORE', raising=False)
    return ws


def test_failure_then_resume(tmp_path, monkeypatch):
    ws = _workspace(tmp_path, monkeypatch)
    flag = tmp_path/'flag'
    out = cli('run', '--run-id', 'r', '-p', f'flag={flag}', '--no-progress', cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    err = out.stderr
    assert "phase 'flaky' failed at cell" in err and "if not Path(flag).exists():" in err
    assert f"RuntimeError: upstream file {flag} is missing" in err and "mlops_nb run --resume r" in err
    assert 'SKIPPED' not in out.stdout or 'after' not in out.stdout.split('FAILED')[0]

    from mlops_nb.store import Store
    st = Store()
    states = [(x.type, x.state) for x in st.executions('r')]
    assert states == [('scoping', 'COMPLETE'), ('flaky', 'FAILED')]
    failed = st.executions('r', 'flaky')[0]
    assert 'upstream file' in failed['error']
    assert (ws/'runs'/'r'/'02_flaky.ipynb').is_file()  # the partly executed notebook is kept
    summary = json.loads((ws/'runs'/'r'/'summary.json').read_text())
    assert [p['status'] for p in summary['phases']] == ['COMPLETE', 'FAILED', 'SKIPPED']
    counts_before = {t: len(st.artifacts(t)) for t in ('ScopingCard', 'Baseline', 'File')}
    assert counts_before == {'ScopingCard': 1, 'Baseline': 4, 'File': 1}

    flag.write_text('now it is there')
    res = cli('run', '--resume', 'r', '--no-progress', cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'REUSED' in res.stdout
    states = [(x.type, x.state) for x in st.executions('r')]
    assert states == [('scoping', 'COMPLETE'), ('flaky', 'FAILED'), ('flaky', 'COMPLETE'), ('after', 'COMPLETE')]
    counts = {t: len(st.artifacts(t)) for t in ('ScopingCard', 'Baseline', 'File')}
    assert counts == {'ScopingCard': 1, 'Baseline': 4, 'File': 3}  # partial (found again), rest, final
    summary = json.loads((ws/'runs'/'r'/'summary.json').read_text())
    assert [p['status'] for p in summary['phases']] == ['REUSED', 'COMPLETE', 'COMPLETE']

    # the final file's lineage reaches back through both phases to the scoping card
    from mlops_nb.lineage import format_lineage
    final = st.latest_artifact('File', run_id='r', label='final')
    txt = format_lineage(st.upstream(final.id))
    assert 'ScopingCard#' in txt and 'flaky execution' in txt and 'scoping execution' in txt

    # resuming a completed run re-runs nothing; resuming an unknown run is a clear error
    again = cli('run', '--resume', 'r', '--no-progress', cwd=tmp_path)
    assert again.returncode == 0 and 'REUSED' in again.stdout
    summary = json.loads((ws/'runs'/'r'/'summary.json').read_text())
    assert [p['status'] for p in summary['phases']] == ['REUSED'] * 3
    assert len(st.executions('r')) == 4  # nothing ran again
    unknown = cli('run', '--resume', 'nope', cwd=tmp_path)
    assert unknown.returncode == 2 and "Cannot resume 'nope'" in unknown.stderr
