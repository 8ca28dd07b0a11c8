"""A failing phase stops the run, is recorded as FAILED, and `--resume` continues without duplicates; a run is run by one
process at a time, and what a killed one left RUNNING is canceled by its resume."""
import json, os, shutil, signal, subprocess, time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from conftest import CLI, ROOT, cli

PARAMS = 'run_id: str = ""\nstore_uri: str = ""\nexecuted_notebook: str = ""\nflag: str = ""  # a file that must exist\n'


def _phase_nb(path: Path, name: str, body: list[str]):
    cells = [new_code_cell(PARAMS, metadata={'tags': ['parameters']}),
             new_code_cell(f"from pathlib import Path\nfrom mlops_nb.core.tracking import start_step\nstep = start_step({name!r}, globals())"),
             *map(new_code_cell, body), new_code_cell('step.finish()')]
    nb = new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}})
    nbformat.write(nb, path)


def _workspace(tmp_path, monkeypatch) -> Path:
    ws = tmp_path/'ws'
    (ws/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', ws/'settings.ini')
    shutil.copytree(ROOT/'data', ws/'data')   # the workspace's rules and scoping files
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
    # the failing line of the cell is named, not its first line
    assert "phase 'flaky' failed at cell" in err and "), line 2: raise RuntimeError(f'upstream file {flag} is missing')" in err
    assert f"RuntimeError: upstream file {flag} is missing" in err and "mlops_nb run --resume r" in err
    assert 'SKIPPED' not in out.stdout or 'after' not in out.stdout.split('FAILED')[0]

    from mlops_nb.core.store import Store
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
    from mlops_nb.core.lineage import format_lineage
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


def _dead(pid: int) -> bool:
    "The process has ended (gone, or a zombie nobody has reaped yet)."
    try: stat = Path(f'/proc/{pid}/stat').read_text()
    except FileNotFoundError: return True
    return stat.rsplit(')', 1)[1].split()[0] in ('Z', 'X')


class _Hold:
    "A workspace whose one phase has a sub-step that waits until the test lets it go on, and a run 'k' of it started in the background."
    def __init__(self, tmp_path, monkeypatch):
        ws = tmp_path/'ws'
        (ws/'nbs').mkdir(parents=True)
        shutil.copy(ROOT/'settings.ini', ws/'settings.ini')
        _phase_nb(ws/'nbs'/'01_hold.ipynb', 'hold', [
            "import os, time\nPath(flag + '.kernel').write_text(str(os.getpid()))",
            "with step.substep('wait'):\n    while not Path(flag).exists(): time.sleep(0.05)"])
        for k, v in dict(MLOPS_NB_HOME=ws, MLOPS_NB_RUNS=ws/'runs').items(): monkeypatch.setenv(k, str(v))
        monkeypatch.delenv('MLOPS_NB_STORE', raising=False)
        from mlops_nb.core.store import Store
        self.st, self.flag, self.folder, self.cwd = Store(), tmp_path/'flag', ws/'runs'/'k', tmp_path  # the store exists first
        self.proc = subprocess.Popen([str(CLI), 'run', '--run-id', 'k', '-p', f'flag={self.flag}', '--no-progress'], cwd=tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def states(self) -> list[tuple[str, str]]:
        try: return [(x.type, x.state) for x in self.st.executions('k')]
        except KeyError: return []

    def wait_running(self) -> int:
        "Wait until the phase and its sub-step are RUNNING; the kernel's pid."
        deadline = time.monotonic() + 120
        while self.states() != [('hold', 'RUNNING'), ('hold.wait', 'RUNNING')]:
            assert self.proc.poll() is None and time.monotonic() < deadline, (self.states(), self.proc.poll() is None or self.proc.communicate())
            time.sleep(0.1)
        return int(Path(f'{self.flag}.kernel').read_text())


def test_a_run_is_locked_while_it_runs_and_its_resume_cancels_what_a_kill_left_running(tmp_path, monkeypatch):
    run = _Hold(tmp_path, monkeypatch)
    st, flag, folder, first, states = run.st, run.flag, run.folder, run.proc, run.states
    try:
        kernel = run.wait_running()
        params = (folder/'params.yaml').read_text()

        # while it runs, a resume (or a new run with its id) is refused at once, names the process, and writes nothing
        for args in (('--resume', 'k'), ('--run-id', 'k', '-p', f'flag={flag}')):
            second = cli('run', *args, '--no-progress', cwd=tmp_path)
            assert second.returncode == 75, (args, second.stdout + second.stderr)
            assert f"run 'k' is already running: process {first.pid} " in second.stderr, second.stderr
            assert f"kill {first.pid}" in second.stderr and 'mlops_nb run --resume k' in second.stderr
        assert states() == [('hold', 'RUNNING'), ('hold.wait', 'RUNNING')]
        assert (folder/'params.yaml').read_text() == params and not (folder/'summary.json').exists()
    finally:
        first.kill()  # kill -9 of the runner mid-phase ...
        first.communicate()
    try: os.kill(kernel, signal.SIGKILL)  # ... and of its kernel (it may have noticed its parent's death and ended first)
    except ProcessLookupError: pass
    deadline = time.monotonic() + 30
    while not _dead(kernel): assert time.monotonic() < deadline, f"kernel {kernel} still alive"; time.sleep(0.05)
    assert states() == [('hold', 'RUNNING'), ('hold.wait', 'RUNNING')]  # nobody could record that they stopped

    flag.write_text('go on')
    res = cli('run', '--resume', 'k', '--no-progress', cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    xs = st.executions('k')
    assert [(x.type, x.state) for x in xs] == [('hold', 'CANCELED'), ('hold.wait', 'CANCELED'), ('hold', 'COMPLETE'), ('hold.wait', 'COMPLETE')]
    for x in xs[:2]:
        assert x['error'].startswith("abandoned: the process running it ended without finishing (found by the resume of run 'k' at ")
    assert f"CANCELED 2 executions left RUNNING by a process that ended without finishing them: #{xs[0].id}, #{xs[1].id}" in res.stdout
    summary = json.loads((folder/'summary.json').read_text())
    assert summary['status'] == 'COMPLETE' and summary['canceled'] == [xs[0].id, xs[1].id]
    assert next(l for l in cli('runs').stdout.splitlines() if l.startswith('k ')).split()[3] == 'COMPLETE'


def test_sigterm_stops_a_run_recording_what_it_stopped_and_the_resume_completes_it(tmp_path, monkeypatch):
    run = _Hold(tmp_path, monkeypatch)
    try:
        run.wait_running()
        run.proc.send_signal(signal.SIGTERM)
        out, err = run.proc.communicate(timeout=120)
    finally:
        if run.proc.poll() is None: run.proc.kill(); run.proc.communicate()
    assert run.proc.returncode == 143, out + err
    assert 'STOPPED by SIGTERM: run k was interrupted' in err and 'continue with: mlops_nb run --resume k' in err
    xs = run.st.executions('k')
    assert [(x.type, x.state) for x in xs] == [('hold', 'CANCELED'), ('hold.wait', 'CANCELED')]  # none left RUNNING
    assert all(x['error'].startswith('interrupted: the runner got SIGTERM at ') for x in xs)
    summary = json.loads((run.folder/'summary.json').read_text())
    assert summary['status'] == 'CANCELED' and [p['status'] for p in summary['phases']] == ['CANCELED']
    run.flag.write_text('go on')
    res = cli('run', '--resume', 'k', '--no-progress', cwd=run.cwd)  # the lock went with the process
    assert res.returncode == 0, res.stdout + res.stderr
    assert run.states()[2:] == [('hold', 'COMPLETE'), ('hold.wait', 'COMPLETE')] and 'CANCELED' not in res.stdout
