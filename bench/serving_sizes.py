"""Serving speed by input size: our server (one model, prediction log off) serving a model of the 8×8 digits (64 values
per request) beside one of the 28×28 MNIST digits (784 values), interleaved round by round on loopback, with the same
architecture, the same load generator (wrk, one thread) and requests drawn from each data set's own images.

What it shows: how much of a request's cost is its size — JSON parsing and validation of 12× more numbers, and a
model with a 12× larger input — against the fixed cost of the HTTP stack, routing and logging.

    python bench/serving_sizes.py [--seconds 3] [--rounds 3] [--concurrency 1,8] [--arch cnn]
"""
from __future__ import annotations
import argparse, json, os, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_speed import ensure_wrk, load_args, run_wrk, wrk_script   # noqa: E402  (the same load generator and figures)


def make_model(source: str, folder: Path, store_uri: str, arch: str) -> tuple[int, np.ndarray, str]:
    "A model trained briefly on `source` (1,400 images), exported with its data contract and registered; its images and its name."
    from mlops_nb.core.store import Store
    from mlops_nb.core.tracking import content_hash
    from mlops_nb.data.contract import contract_of, save_contract
    from mlops_nb.data.ingest import load_source, sample_dataset
    from mlops_nb.modeling.export import export_model
    from mlops_nb.modeling.train import TrainConfig, to_images, train
    ds = sample_dataset(load_source(source), 1797)
    contract = contract_of(ds)
    X, y = to_images(ds.frame, contract=contract), ds.frame['label'].to_numpy()
    model, _ = train(TrainConfig(arch=arch, epochs=4), X[:1400], y[:1400], X[1400:], y[1400:], progress=False, classes=contract.n_classes)
    out = folder/source; out.mkdir(parents=True)
    export_model(model, out); save_contract(contract, out)
    st = Store(store_uri); st.put_run('bench')
    x = st.start_execution('bench.train', 'bench')
    mid = st.record_output(x.id, 'Model', str(out), content_hash(out), run_id='bench').id
    st.finish_execution(x.id)
    return mid, ds.frame[ds.features].to_numpy(), contract.name


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    load_args(ap, rounds=3, concurrency='1,8')
    args = ap.parse_args()
    concs = [int(c) for c in args.concurrency.split(',')]
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    wrk = ensure_wrk()
    from mlops_nb.serving.process import ServerProcess
    tmp = Path(tempfile.mkdtemp(prefix='mlops_nb-bench-sizes-'))
    store_uri = f"sqlite:///{tmp/'mlmd.sqlite'}"
    servers, rounds, procs = {}, {}, []
    try:
        rng = np.random.default_rng(0)
        for source in ('digits', 'mnist'):
            t = time.perf_counter()
            mid, X, name = make_model(source, tmp/'models', store_uri, args.arch)
            bodies = [json.dumps({'instances': [X[i].tolist()], 'key': f'user-{k}'}) for k, i in enumerate(rng.integers(0, len(X), 300))]
            (tmp/source).mkdir()
            lua = wrk_script(tmp/source, bodies)
            s = ServerProcess(tmp/f's-{source}', store_uri=store_uri, model=str(mid), allow_unblessed=True, guard_interval=0, extra=('--no-prediction-log',)).start()
            procs.append(s)
            label = f"{source} ({X.shape[1]} values)"
            servers[label] = (s.url + f'/v1/models/{name}:predict', s.proc.pid, lua, len(bodies[0]))
            print(f"{label}: model trained, exported and served in {time.perf_counter() - t:.1f} s; a request body is {len(bodies[0]):,} bytes", flush=True)
        for url, pid, lua, _ in servers.values(): run_wrk(wrk, url, lua, 4, 1)   # warm up
        for _ in range(args.rounds):
            for label, (url, pid, lua, _) in servers.items():
                for c in concs: rounds.setdefault((label, c), []).append(run_wrk(wrk, url, lua, c, args.seconds, pid))
    finally:
        for p in procs: p.stop()
    res = {k: sorted(v, key=lambda r: r['rps'])[len(v) // 2] for k, v in rounds.items()}
    for (label, c), r in res.items():
        print(f"{label:<22} c={c:<3} {r['rps']:>8.0f} req/s   p50 {r['p50']:>7.2f} ms   p99 {r['p99']:>7.2f} ms   server CPU {r['cpu_us']:>6.0f} µs/req")
    small, big = list(servers)
    for c in concs:
        ratio = sorted(b['rps'] / s['rps'] for s, b in zip(rounds[(small, c)], rounds[(big, c)]))
        print(f"  c={c:<3} 784 vs 64 values: throughput {res[(big, c)]['rps'] / res[(small, c)]['rps']:6.1%} of the digits' "
              f"(per round {ratio[0]:.0%}–{ratio[-1]:.0%})   server CPU per request {res[(big, c)]['cpu_us'] / res[(small, c)]['cpu_us']:.2f}×")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
