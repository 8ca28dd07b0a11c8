"""Benchmark: what the pipeline runner costs per phase, against running the same notebook code directly.

For each phase notebook: (a) `run_pipeline` (papermill, a fresh kernel, MLMD writes), and (b) the notebook's code
cells executed as one plain Python script in a fresh process (same parameters, same store writes). Also times the
parts of (a): starting and stopping a kernel, and the MLMD writes of one phase. Prints medians of --repeat runs.

    .venv/bin/python bench/runner_overhead.py [--repeat 3] [--phases scoping]
"""
from __future__ import annotations
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('MLOPS_NB_RUNS', tempfile.mkdtemp(prefix='mlops_nb-bench-'))
os.environ.setdefault('MPLBACKEND', 'Agg')

from mlops_nb.core.runner import discover_phases, run_pipeline, select_phases  # noqa: E402
from mlops_nb.core.store import Store  # noqa: E402


def direct_script(nb_path: Path, run_id: str) -> str:
    "The notebook's code cells as one script, with the runner's parameters set after the parameters cell."
    cells = json.loads(nb_path.read_text())['cells']
    out = []
    for c in cells:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        out.append('\n'.join(l for l in src.splitlines() if not l.startswith('%') and 'from __future__' not in l))
        if 'parameters' in c.get('metadata', {}).get('tags', []): out.append(f"run_id = {run_id!r}")
    return '\n\n'.join(out)


def time_direct(ph, i: int) -> float:
    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(direct_script(ph.path, f"direct-{ph.name}-{i}"))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, f.name], capture_output=True, text=True, cwd=ph.path.parent)
    if res.returncode: raise SystemExit(f"direct run of {ph.name} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def time_runner(ph, i: int) -> float:
    t0 = time.perf_counter()
    run_pipeline(phases=ph.name, run_id=f"runner-{ph.name}-{i}", progress=False, echo=lambda *a: None)
    return time.perf_counter() - t0


def time_kernel() -> float:
    from jupyter_client.manager import start_new_kernel
    t0 = time.perf_counter()
    km, kc = start_new_kernel(kernel_name='python3')
    kc.execute_interactive('pass', timeout=60)
    kc.stop_channels(); km.shutdown_kernel(now=True)
    return time.perf_counter() - t0


def time_shutdown(mode: str) -> float:
    "Seconds from a notebook's last cell ending to papermill returning, with TFDV and TensorFlow loaded in the kernel."
    import datetime as dt
    import nbformat, papermill as pm
    from nbformat.v4 import new_code_cell, new_notebook
    folder = Path(tempfile.mkdtemp(prefix='mlops_nb-shutdown-'))
    nb = new_notebook(cells=[new_code_cell("import tensorflow_data_validation, tensorflow")])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, folder/'a.ipynb')
    out = pm.execute_notebook(str(folder/'a.ipynb'), str(folder/'b.ipynb'), kernel_name='python3', progress_bar=False, shutdown_kernel=mode)
    return time.time() - dt.datetime.fromisoformat(out.cells[-1].metadata.papermill.end_time).timestamp()


def time_mlmd_phase(n_outputs: int = 5) -> float:
    "One phase's store traffic: open the run and execution, register outputs, finish."
    st = Store()
    rid = f"mlmd-{time.time_ns()}"
    t0 = time.perf_counter()
    st.put_run(rid)
    x = st.start_execution('bench', rid, parameters={'a': 1})
    for k in range(n_outputs): st.record_output(x.id, 'File', f"/x/{k}", f"{rid}-{k}", run_id=rid)
    st.finish_execution(x.id)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--phases', default=None, help='comma-separated phases (default: all)')
    a = ap.parse_args()
    print(f"runs folder: {os.environ['MLOPS_NB_RUNS']}   repeats: {a.repeat}   (medians, seconds)")
    kernel = statistics.median(time_kernel() for _ in range(a.repeat))
    mlmd = statistics.median(time_mlmd_phase() for _ in range(a.repeat))
    print(f"kernel start+stop: {kernel:.2f} s    MLMD writes of one phase (run, execution, 5 outputs): {mlmd * 1000:.1f} ms")
    polite, now = (statistics.median(time_shutdown(m) for _ in range(a.repeat)) for m in ('graceful', 'immediate'))
    print(f"after the last cell, with TFDV loaded: graceful shutdown {polite:.2f} s, immediate (the runner's) {now:.2f} s")
    print(f"{'phase':<12}{'runner':>9}{'direct':>9}{'overhead':>10}{'ratio':>8}")
    for ph in select_phases(discover_phases(), a.phases):
        r = statistics.median(time_runner(ph, i) for i in range(a.repeat))
        d = statistics.median(time_direct(ph, i) for i in range(a.repeat))
        print(f"{ph.name:<12}{r:>9.2f}{d:>9.2f}{r - d:>10.2f}{r / d:>8.2f}x")


if __name__ == '__main__':
    main()
