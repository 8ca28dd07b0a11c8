"""Serving speed on loopback: throughput and p50/p99 latency at concurrency 1, 8 and 32, in one run, for
(a) our server with a single model (prediction log off),
(b) our server with canary routing (10% to a second model) and the prediction log on,
(c) a bare FastAPI endpoint on the same uvicorn that returns a constant: the floor of the stack,
(d) the common tutorial server: FastAPI + pydantic, Keras `model.predict` per request,
(e) (b) with the Prometheus metrics off, to measure what metrics collection costs,
(f) KServe's Python model server (`kserve` 0.21, V1 protocol `POST /v1/models/digits:predict` with `{"instances": …}`):
    a `kserve.Model` that runs (a)'s `.tflite` file on the same LiteRT interpreter as ours (bench/peers/kserve_server.py),
    with KServe's per-request logging off, and (f+) the same with KServe's default logging (four lines a request),
(g) a raw ASGI app (no FastAPI, no Starlette) on uvicorn with http='httptools' returning a constant: the floor of the
    HTTP stack itself,
(h) (b) with `--http h11` (uvicorn's pure-Python parser) instead of the default httptools.

Load comes from wrk (Debian's package; installed here if missing) with one thread, so that most of the
2 cores stay with the server. Every request is one 8x8 image from the digits, with its own user key.
Targets of the deployment issue: (b) >= 70% of (c)'s throughput and >= 50x (d)'s; (b)'s p50 <= 1.10 x (a)'s.
Targets against the peers (issue #18): (b) >= 2x (f)'s throughput at every concurrency, (b)'s p99 at c=1 <= (f)'s,
(b) >= 70% of (g)'s throughput; (a), the like-for-like configuration of (f) (one model, no log), is shown beside it.
Every ratio comes with the min-max of its per-round values (the servers of a round run seconds apart): a difference
inside that spread is noise.
With one connection, (b) also pays for the CPU clock its model calls lower on AVX-512 Xeons: see cpu_throttle.py.

KServe conflicts with the project lock, so (f) runs from its own venv: bench/peers/build_kserve.sh builds
bench/peers/kserve/.venv from the pins in bench/peers/kserve.txt (--kserve names another interpreter; without one,
(f) is skipped with a message saying so). KServe there runs on uvloop, which it installs; ours runs on asyncio's loop.

With --baseline PYTHON, (a) and (b) also run from another installation of mlops_nb (for example the previous
commit's checkout and venv) as (a0) and (b0), interleaved with the others in every round, and the change is
reported against the spread of the per-round ratios: a difference inside that spread is noise.

    python bench/serving_speed.py [--seconds 3] [--rounds 5] [--concurrency 1,8,32] [--baseline OTHER/.venv/bin/python]
                                  [--kserve bench/peers/kserve/.venv/bin/python]
"""
from __future__ import annotations
import argparse, json, os, re, shutil, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

import numpy as np

PEERS = Path(__file__).resolve().parent/'peers'

FLOOR_APP = '''
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
app = FastAPI()
ANSWER = b'{"predictions": [{"class": 0, "probabilities": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}'
@app.post('/v1/models/digits:predict')
async def predict(request: Request):
    await request.body()
    return Response(ANSWER, media_type='application/json')
'''

RAW_ASGI_APP = '''
ANSWER = b'{"predictions": [{"class": 0, "probabilities": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}'
START = {'type': 'http.response.start', 'status': 200,
         'headers': [(b'content-type', b'application/json'), (b'content-length', str(len(ANSWER)).encode())]}
BODY = {'type': 'http.response.body', 'body': ANSWER}
async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            m = await receive()
            if m['type'] == 'lifespan.startup': await send({'type': 'lifespan.startup.complete'})
            elif m['type'] == 'lifespan.shutdown': await send({'type': 'lifespan.shutdown.complete'}); return
    more = True
    while more: more = (await receive()).get('more_body', False)   # the whole body, as a server must read it
    await send(START)
    await send(BODY)
'''

TUTORIAL_APP = '''
import os
import numpy as np, keras
from fastapi import FastAPI
from pydantic import BaseModel
model = keras.saving.load_model(os.environ['BENCH_MODEL'])
app = FastAPI()
class PredictRequest(BaseModel):
    instances: list[list[float]]
    key: str | None = None
@app.post('/v1/models/digits:predict')
def predict(req: PredictRequest):
    x = np.array(req.instances, dtype='float32').reshape(-1, 8, 8, 1) / 16
    p = model.predict(x, verbose=0)
    return {'predictions': [{'class': int(r.argmax()), 'probabilities': r.tolist()} for r in p]}
'''


def ensure_wrk() -> str:
    w = shutil.which('wrk')
    if w: return w
    print('installing wrk from Debian …', flush=True)
    sudo = [] if os.geteuid() == 0 else ['sudo']
    subprocess.run([*sudo, 'apt-get', 'install', '-y', '-q', 'wrk'], check=True, capture_output=True)
    return shutil.which('wrk')


def make_models(folder: Path, store_uri: str, arch: str = 'cnn') -> tuple[int, int, Path]:
    "Two Keras CNNs (the pipeline's default architecture) trained briefly on the bundled digits, exported (SavedModel + TFLite) and registered as Model artifacts."
    from mlops_nb.modeling.export import export_model
    from mlops_nb.data.ingest import load_digits_dataset
    from mlops_nb.data.contract import contract_of, save_contract
    from mlops_nb.core.store import Store
    from mlops_nb.core.tracking import content_hash
    from mlops_nb.modeling.train import TrainConfig, to_images, train
    ds = load_digits_dataset(); f = ds.frame
    contract = contract_of(ds)   # a model folder holds the data contract the server reads requests by
    X, y = to_images(f, contract=contract), f['label'].to_numpy()
    st = Store(store_uri); st.put_run('bench')
    ids = []
    for seed in (0, 1):
        model, _ = train(TrainConfig(arch=arch, epochs=4, seed=seed), X[:1400], y[:1400], X[1400:], y[1400:], progress=False)
        out = folder/f'model-{seed}'; out.mkdir(parents=True)
        export_model(model, out)
        save_contract(contract, out)
        model.save(out/'model.keras')
        x = st.start_execution('bench.train', 'bench')
        ids.append(st.record_output(x.id, 'Model', str(out), content_hash(out), run_id='bench').id)
        st.finish_execution(x.id)
    return ids[0], ids[1], folder/'model-0'/'model.keras'


def wrk_script(folder: Path, bodies: list[str]) -> Path:
    lua = folder/'requests.lua'
    items = ',\n'.join('[==[' + b + ']==]' for b in bodies)  # long brackets of level 2: JSON holds ]]
    lua.write_text(textwrap.dedent('''
        wrk.method = "POST"
        wrk.headers["Content-Type"] = "application/json"
        local bodies = {%s}
        local i = 0
        request = function()
          i = i %% #bodies + 1
          return wrk.format(nil, nil, nil, bodies[i])
        end
        ''') % items)
    return lua


def to_ms(v: str) -> float:
    m = re.match(r'([\d.]+)(us|ms|s)', v)
    return float(m.group(1)) * {'us': 1e-3, 'ms': 1.0, 's': 1000.0}[m.group(2)]


def cpu_seconds(pid: int) -> float:
    "CPU time (user + system) of a process and its children so far (all threads), from /proc."
    pids = [pid] + [int(p) for p in Path(f'/proc/{pid}/task/{pid}/children').read_text().split()] if Path(f'/proc/{pid}/task/{pid}/children').exists() else [pid]
    total = 0
    for p in pids:
        f = Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()
        total += int(f[11]) + int(f[12])
    return total / os.sysconf('SC_CLK_TCK')


def run_wrk(wrk: str, url: str, lua: Path, conc: int, seconds: float, pid: int | None = None) -> dict:
    c0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run([wrk, '-t1', f'-c{conc}', f'-d{seconds}s', '--latency', '--timeout', '60s', '-s', str(lua), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    lat = {p: to_ms(re.search(rf'^\s+{p}%\s+(\S+)', out, re.M).group(1)) for p in ('50', '99')}
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    sock = re.search(r'Socket errors: (.*)', out)
    n = int(re.search(r'(\d+) requests in', out).group(1))
    if n == 0: print(f"warning: {url}: no request was answered in {seconds} s at concurrency {conc} (a server slower than the run)", file=sys.stderr)
    r = dict(rps=rps, p50=lat['50'], p99=lat['99'], non2xx=int(errors.group(1)) if errors else 0, socket_errors=sock.group(1) if sock else '',
             cpu_us=(cpu_seconds(pid) - c0) / n * 1e6 if pid and n else float('nan'))
    if r['non2xx']: raise RuntimeError(f"{url}: {r['non2xx']} requests failed under load; the figures would be meaningless")
    return r


def start_uvicorn(app_code: str, folder: Path, name: str, port: int, env: dict | None = None, http: str = 'auto') -> subprocess.Popen:
    (folder/f'{name}.py').write_text(app_code)
    p = subprocess.Popen([sys.executable, '-m', 'uvicorn', f'{name}:app', '--app-dir', str(folder), '--port', str(port),
                          '--log-level', 'warning', '--no-access-log', '--http', http], env={**os.environ, **(env or {})},
                         stdout=subprocess.DEVNULL, stderr=open(folder/f'{name}.log', 'w'))
    import httpx
    for _ in range(600):
        try:
            httpx.get(f'http://127.0.0.1:{port}/docs', timeout=1); return p
        except httpx.HTTPError: time.sleep(0.1)
    raise RuntimeError(f"{name} did not start: {(folder/f'{name}.log').read_text()[-2000:]}")


def start_kserve(python: str, tflite: Path, folder: Path, name: str, port: int, log: bool = False) -> subprocess.Popen:
    "The KServe peer (bench/peers/kserve_server.py) on `python`, serving `tflite` as 'digits' on `port`; ready once the V1 model endpoint says so."
    import httpx
    out = open(folder/f'{name}.log', 'w')   # the logging variant writes here, as a container's log would take it
    p = subprocess.Popen([python, str(PEERS/'kserve_server.py'), str(tflite), 'digits', str(port), *(['--log'] if log else [])],
                         stdout=out, stderr=subprocess.STDOUT)
    for _ in range(900):
        if p.poll() is not None: raise RuntimeError(f"{name} exited with {p.returncode}: {(folder/f'{name}.log').read_text()[-2000:]}")
        try:
            if httpx.get(f'http://127.0.0.1:{port}/v1/models/digits', timeout=1).status_code == 200: return p
        except httpx.HTTPError: pass
        time.sleep(0.1)
    p.kill(); raise RuntimeError(f"{name} did not start: {(folder/f'{name}.log').read_text()[-2000:]}")


def per_round(rounds: dict, x: str, y: str, c: int, key: str = 'rps') -> list[float]:
    "x's figure over y's in each round (the two ran seconds apart), sorted."
    return sorted(p[key] / q[key] for p, q in zip(rounds[(x, c)], rounds[(y, c)]))


def load_args(ap: argparse.ArgumentParser, rounds: int, concurrency: str) -> None:
    "The options every serving bench takes: seconds of load, rounds, the models' architecture, the connections."
    ap.add_argument('--seconds', type=int, default=3, help='whole seconds of load per server, concurrency and round (wrk takes whole seconds; default 3)')
    ap.add_argument('--rounds', type=int, default=rounds, help=f'rounds over all servers; the median round is reported (default {rounds})')
    ap.add_argument('--arch', default='cnn', choices=['cnn', 'mlp'], help="the served models' architecture (default cnn, the pipeline's)")
    ap.add_argument('--concurrency', default=concurrency, help=f'connections, comma-separated (default {concurrency})')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    load_args(ap, rounds=5, concurrency='1,8,32')
    ap.add_argument('--baseline', metavar='PYTHON', help="another installation's interpreter: its server runs as (a0) and (b0) beside ours")
    ap.add_argument('--kserve', metavar='PYTHON', default=str(PEERS/'kserve'/'.venv'/'bin'/'python'),
                    help="the KServe peer's interpreter, for (f) (default bench/peers/kserve/.venv/bin/python, built by bench/peers/build_kserve.sh)")
    args = ap.parse_args()
    kserve = args.kserve if Path(args.kserve).is_file() else None
    if not kserve: print(f"(f) KServe skipped: no interpreter at {args.kserve}; run bench/peers/build_kserve.sh to build it", flush=True)
    concs = [int(c) for c in args.concurrency.split(',')]
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    wrk = ensure_wrk()
    from mlops_nb.data.ingest import PIXELS, load_digits_dataset
    from mlops_nb.serving.predlog import read_log
    from mlops_nb.serving.process import ServerProcess, free_port
    tmp = Path(tempfile.mkdtemp(prefix='mlops_nb-bench-serving-'))
    store_uri = f"sqlite:///{tmp/'mlmd.sqlite'}"
    t = time.perf_counter()
    m1, m2, keras_file = make_models(tmp/'models', store_uri, args.arch)
    print(f"two {args.arch.upper()} models trained and registered in {time.perf_counter() - t:.1f} s", flush=True)
    X = load_digits_dataset().frame[PIXELS].to_numpy()
    rng = np.random.default_rng(0)
    bodies = [json.dumps({'instances': [X[i].tolist()], 'key': f'user-{k}'}) for k, i in enumerate(rng.integers(0, len(X), 500))]
    lua = wrk_script(tmp, bodies)
    servers, rounds, results, procs = {}, {}, {}, []
    try:
        a = ServerProcess(tmp/'a', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0, extra=('--no-prediction-log',)).start()
        b = ServerProcess(tmp/'b', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0).start()
        b.admin.deploy('canary', str(m2), share=100, auto=False)
        e = ServerProcess(tmp/'e', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0, extra=('--no-metrics',)).start()
        e.admin.deploy('canary', str(m2), share=100, auto=False)
        procs += [a, b, e]
        pc, pd_ = free_port(), free_port()
        floor = start_uvicorn(FLOOR_APP, tmp, 'floor_app', pc)
        tutorial = start_uvicorn(TUTORIAL_APP, tmp, 'tutorial_app', pd_, env={'BENCH_MODEL': str(keras_file), 'TF_CPP_MIN_LOG_LEVEL': '3'})
        procs += [floor, tutorial]
        h = ServerProcess(tmp/'h', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0, extra=('--http', 'h11')).start()
        h.admin.deploy('canary', str(m2), share=100, auto=False)
        procs.append(h)
        for srv, stack in ((b, 'httptools'), (h, 'h11')):   # the startup line names the HTTP stack
            if f'HTTP on {stack}' not in srv.log_tail(50): raise RuntimeError(f"{srv.state_dir.name}: expected HTTP on {stack}:\n{srv.log_tail()}")
        pg = free_port()
        raw = start_uvicorn(RAW_ASGI_APP, tmp, 'raw_asgi_app', pg, http='httptools')
        procs.append(raw)
        N = dict(a='(a) ours, one model', b='(b) ours, canary + log', c='(c) bare FastAPI constant', d='(d) tutorial model.predict',
                 e='(e) = (b) without metrics', f='(f) KServe, logging off', F='(f+) KServe, logging on', g='(g) raw ASGI constant',
                 h='(h) = (b) on h11')
        servers = {N['a']: (a.url, a.proc.pid), N['b']: (b.url, b.proc.pid),
                   N['c']: (f'http://127.0.0.1:{pc}', floor.pid), N['d']: (f'http://127.0.0.1:{pd_}', tutorial.pid),
                   N['e']: (e.url, e.proc.pid)}
        if kserve:
            tflite = tmp/'models'/'model-0'/'model.tflite'   # (a)'s model m1, with its contract.json beside it
            pf, pF = free_port(), free_port()
            kf = start_kserve(kserve, tflite, tmp, 'kserve_quiet', pf)
            kF = start_kserve(kserve, tflite, tmp, 'kserve_logging', pF, log=True)
            procs += [kf, kF]
            servers.update({N['f']: (f'http://127.0.0.1:{pf}', kf.pid), N['F']: (f'http://127.0.0.1:{pF}', kF.pid)})
        servers.update({N['g']: (f'http://127.0.0.1:{pg}', raw.pid), N['h']: (h.url, h.proc.pid)})
        if args.baseline:
            a0 = ServerProcess(tmp/'a0', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0, extra=('--no-prediction-log',), python=args.baseline).start()
            b0 = ServerProcess(tmp/'b0', store_uri=store_uri, model=str(m1), allow_unblessed=True, guard_interval=0, python=args.baseline).start()
            b0.admin.deploy('canary', str(m2), share=100, auto=False)
            procs += [a0, b0]
            N.update(a0='(a0) baseline, one model', b0='(b0) baseline, canary + log')
            servers.update({N['a0']: (a0.url, a0.proc.pid), N['b0']: (b0.url, b0.proc.pid)})
        for name, (url, pid) in servers.items(): run_wrk(wrk, url + '/v1/models/digits:predict', lua, 4, 1)  # warm up
        for rnd in range(args.rounds):   # rounds interleave the servers, so that a noisy moment does not hit one server only
            for name, (url, pid) in servers.items():
                for c in concs:
                    try: rounds.setdefault((name, c), []).append(run_wrk(wrk, url + '/v1/models/digits:predict', lua, c, args.seconds, pid))
                    except RuntimeError as e: raise RuntimeError(f"{name}, round {rnd}: {e}") from None
        for (name, c), rs in rounds.items():   # the median round by throughput
            r = results[(name, c)] = sorted(rs, key=lambda r: r['rps'])[len(rs) // 2]
            print(f"{name:<28} c={c:<3} {r['rps']:>8.0f} req/s   p50 {r['p50']:>8.2f} ms   p99 {r['p99']:>8.2f} ms   server CPU {r['cpu_us']:>7.0f} µs/req", flush=True)
        b_stats = __import__('httpx').get(b.url + '/stats').json()
    finally:
        for p in procs:
            if isinstance(p, ServerProcess): p.stop(); continue
            p.terminate()
            try: p.wait(30)
            except subprocess.TimeoutExpired: p.kill(); p.wait(10)
    log = read_log(tmp/'b'/'predictions.sqlite')
    print(f"\n(b) logged {len(log):,} predictions ({log['arm'].value_counts(normalize=True).round(3).to_dict()}); "
          f"dropped {b_stats['log']['dropped']}; counts {b_stats['counts']}")
    bc = b_stats['counts']
    if bc.get('batches'): print(f"(b) request batching: {bc['batched_requests']:,} requests answered by {bc['batches']:,} model calls (mean {bc['batched_requests'] / bc['batches']:.1f})")
    def spread(r, pct=False): return f"per round {r[0]:.0%}-{r[-1]:.0%}" if pct else f"per round {r[0]:.2f}-{r[-1]:.2f}"
    def verdict(r, target, above=True):   # every round on the target's side: met; every round on the other: missed; else the spread decides nothing
        ok = [x >= target if above else x <= target for x in r]
        return 'met' if all(ok) else 'missed' if not any(ok) else 'inside the spread'
    print('\ntargets')
    for c in concs:
        A, B, C, D = (results[(N[k], c)] for k in 'abcd')
        # this VM's load runs vary by 10-30% from moment to moment: the ratio within each round (b and c seconds apart) is steadier
        pr = per_round(rounds, N['b'], N['c'], c)
        print(f"  c={c:<3} (b)/(c) throughput {B['rps'] / C['rps']:6.1%} (≥ 70%; per round: median {pr[len(pr) // 2]:.1%}, "
              f"{pr[0]:.0%}-{pr[-1]:.0%})   (b)/(d) {B['rps'] / D['rps']:7.1f}× (≥ 50×)   "
              f"(b) p50 vs (a) {B['p50'] / A['p50'] - 1:+6.1%} (≤ +10%)   server CPU (b) vs (a) {B['cpu_us'] / A['cpu_us'] - 1:+6.1%}")
    print('metrics (monitoring issue): Prometheus collection on vs off, side by side')
    for c in concs:
        B, E = results[(N['b'], c)], results[(N['e'], c)]
        print(f"  c={c:<3} (b) p50 vs (e) {B['p50'] / E['p50'] - 1:+6.1%} (≤ +5%)   server CPU {B['cpu_us'] / E['cpu_us'] - 1:+6.1%}")
    print("peers (issue #18): ratios of the median rounds; in brackets the target, whether every round met it, and the per-round ratios' min-max")
    for c in concs:
        G = results[(N['g'], c)]
        for k in 'ba':   # (b), what the targets are on; (a), the like-for-like configuration of KServe's (one model, no log)
            O, T = results[(N[k], c)], k == 'b'
            line = f"  c={c:<3} ({k})"
            if kserve:
                Fq = results[(N['f'], c)]
                r = per_round(rounds, N[k], N['f'], c)
                line += f" / (f) throughput {O['rps'] / Fq['rps']:5.2f}× ({'≥ 2×, ' + verdict(r, 2) + '; ' if T else ''}{spread(r)})"
                if c == 1:
                    r = per_round(rounds, N[k], N['f'], c, 'p99')
                    line += f"   p99 {O['p99']:.2f} vs {Fq['p99']:.2f} ms: {O['p99'] / Fq['p99']:.2f}× ({'≤ 1×, ' + verdict(r, 1, above=False) + '; ' if T else ''}{spread(r)})"
                line += f"   CPU/req {O['cpu_us'] / Fq['cpu_us']:.2f}× (f)'s  "
            r = per_round(rounds, N[k], N['g'], c)
            line += f" / (g) throughput {O['rps'] / G['rps']:6.1%} ({'≥ 70%, ' + verdict(r, 0.7) + '; ' if T else ''}{spread(r, pct=True)})"
            print(line)
    if kserve:
        print("KServe's per-request logging: (f+) logging on vs (f) off")
        for c in concs:
            Fq, Fl = results[(N['f'], c)], results[(N['F'], c)]
            print(f"  c={c:<3} throughput {Fl['rps'] / Fq['rps'] - 1:+6.1%} (per round {(r := per_round(rounds, N['F'], N['f'], c))[0] - 1:+.0%} … {r[-1] - 1:+.0%})   "
                  f"p50 {Fl['p50'] / Fq['p50'] - 1:+6.1%}   CPU/req {Fl['cpu_us'] / Fq['cpu_us'] - 1:+6.1%}")
    print('HTTP parser: (h) our server (b) on h11 vs (b) on httptools')
    for c in concs:
        B, H = results[(N['b'], c)], results[(N['h'], c)]
        print(f"  c={c:<3} (h)/(b) throughput {H['rps'] / B['rps']:6.1%} ({spread(per_round(rounds, N['h'], N['b'], c), pct=True)})   "
              f"p50 {H['p50'] / B['p50'] - 1:+6.1%}   CPU/req {H['cpu_us'] / B['cpu_us'] - 1:+6.1%}")
    if args.baseline:
        print(f'change against the baseline ({args.baseline}), side by side in every round')
        for ours, base in ((N['a'], N['a0']), (N['b'], N['b0'])):
            for c in concs:
                ratio = per_round(rounds, ours, base, c)
                O, B0 = results[(ours, c)], results[(base, c)]
                print(f"  {ours[:3]} vs {base[:4]} c={c:<3} throughput {O['rps'] / B0['rps'] - 1:+6.1%} (per round {ratio[0] - 1:+.0%} … {ratio[-1] - 1:+.0%}: "
                      f"a change inside that spread is noise)   p50 {O['p50'] / B0['p50'] - 1:+6.1%}   server CPU {O['cpu_us'] / B0['cpu_us'] - 1:+6.1%}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
