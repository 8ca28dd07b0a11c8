"""The model server, for real: a child process on a free loopback port, the MLMD store of a pipeline run, LiteRT models."""
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import cli


@pytest.fixture(scope='module')
def registry(deployed):
    "The store after the deployment phase (a champion and a challenger), the serving images and their labels."
    runs, env, out = deployed
    assert out.returncode == 0, out.stderr[-3000:]
    from mlops_nb.serving.phase import serving_sample
    from mlops_nb.core.store import Store
    st = Store(f"sqlite:///{runs/'mlmd.sqlite'}")
    # the challenger under test is the deployment run's: a model another test run blessed later must not take its place
    deploy_challenger = [a for x, a in st.alias_history('challenger') if x.get('run_id') == 'deploy'][-1]
    if st.alias('challenger').id != deploy_challenger.id: st.set_alias('challenger', deploy_challenger, 'deploy', reason='server tests')
    X, y = serving_sample(st)
    return st, X, y


def _server(st, tmp_path, **kw):
    from mlops_nb.serving.process import ServerProcess
    return ServerProcess(tmp_path/'serving', store_uri=st.uri, guard_interval=kw.pop('guard_interval', 0), **kw).start()


def _predict(url, X, key=None, path='/v1/models/digits:predict', **extra):
    body = {'instances': np.asarray(X).reshape(-1, 64).tolist(), **extra}
    if key: body['key'] = key
    return httpx.post(url + path, json=body, timeout=30)


def test_predict_speaks_tf_serving_rest(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.modeling.export import LiteModel
    champion = st.alias('champion')
    with _server(st, tmp_path) as srv:
        r = _predict(srv.url, X[:5])
        assert r.status_code == 200, r.text
        d = r.json()
        assert d['model_version'] == champion.id and d['arm'] == 'stable' and len(d['predictions']) == 5
        P = np.array([p['probabilities'] for p in d['predictions']])
        np.testing.assert_allclose(P.sum(1), 1, atol=1e-4)
        np.testing.assert_allclose(P, LiteModel(Path(champion.uri)/'model.tflite').predict(X[:5] / 16), atol=1e-6)
        assert [p['class'] for p in d['predictions']] == list(P.argmax(1))
        # an 8x8 array per instance is the same image
        r8 = httpx.post(srv.url + '/v1/models/digits:predict', json={'instances': X[:2].reshape(2, 8, 8).tolist()})
        assert [p['class'] for p in r8.json()['predictions']] == [p['class'] for p in d['predictions'][:2]]
        # version status, labels and versions
        status = httpx.get(srv.url + '/v1/models/digits').json()['model_version_status']
        assert status[0]['version'] == str(champion.id) and status[0]['state'] == 'AVAILABLE' and 'stable' in status[0]['labels']
        assert _predict(srv.url, X[:1], path='/v1/models/digits/labels/stable:predict').status_code == 200
        assert _predict(srv.url, X[:1], path=f'/v1/models/digits/versions/{champion.id}:predict').status_code == 200
        assert httpx.get(srv.url + '/healthz').status_code == 200 and httpx.get(srv.url + '/readyz').json()['ready']
        # the data rules answer a blank scan as discarded, next to a real prediction
        r = _predict(srv.url, np.stack([np.zeros(64), X[0]]))
        blank, good = r.json()['predictions']
        assert blank['discarded'] and blank['class'] is None and 'blank' in blank['rules'] and good['class'] is not None



def test_requests_that_arrive_together_share_one_model_call(registry, tmp_path):
    st, X, y = registry
    import asyncio

    async def burst(url, n):
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[client.post(url + '/v1/models/digits:predict', json={'instances': [X[i].tolist()], 'key': f'u{i}'})
                                          for i in range(n)])

    def counts(srv): return httpx.get(srv.url + '/stats').json()['counts']
    with _server(st, tmp_path) as srv:
        alone = np.array([_predict(srv.url, X[i:i + 1], key=f'u{i}').json()['predictions'][0]['probabilities'] for i in range(32)])
        # one request at a time is never combined with another (one that meets an unrelated callback in the loop,
        # such as the metrics tick, goes through the batcher as a batch of one: that happened once in CI)
        c = counts(srv)
        assert c.get('batched_requests', 0) == c.get('batches', 0), c
        # over HTTP, how many requests reach the server in the same loop turn is up to the scheduler: what is guaranteed
        # is that every one is answered, exactly as alone, and that the counts add up
        together = asyncio.run(burst(srv.url, 32))
        c = counts(srv)
        assert c.get('batched_requests', 0) >= c.get('batches', 0), c
        assert all(r.status_code == 200 for r in together)
        # a batched request gets exactly the answer it gets alone
        np.testing.assert_allclose([r.json()['predictions'][0]['probabilities'] for r in together], alone, atol=1e-6)
    # requests that are ready in the same event-loop turn share one model call: in-process, where that turn is certain
    from collections import Counter
    from mlops_nb.serving.runtime import Batcher, ModelSlot
    slot, batcher = ModelSlot.load(st.alias('champion')), Batcher(Counter())
    async def gathered(): return await asyncio.gather(*(batcher.predict(slot, X[i:i + 1]) for i in range(32)))
    P = np.concatenate(asyncio.run(gathered()))
    assert dict(batcher.counts) == {'batches': 1, 'batched_requests': 32}
    np.testing.assert_allclose(P, alone, atol=1e-6)
    with _server(st, tmp_path/'off', extra=('--no-batching',)) as srv:   # concurrent requests from 8 client threads
        from mlops_nb.serving.client import replay
        df = replay(srv.url, X, y, 32, feedback=0, concurrency=8)
        assert (df['status'] == 200).all() and counts(srv)['answered:stable'] == 32, srv.log_tail()
        assert 'batches' not in counts(srv)


BAD = [  # body (bytes or JSON), path, status, kind, words of the message
    (b'{"instances": [[1, 2, 3]]}', None, 400, 'bad_shape', 'instance 0: expected 64 values'),
    (b'{"instances": [' + json.dumps([1] * 64).encode() + b', ' + json.dumps([[1] * 8] * 7).encode() + b']}', None, 400, 'bad_shape', 'instance 1: expected an 8×8 array'),
    (b'{"instances": [[' + b', '.join([b'1'] * 63) + b', NaN]]}', None, 400, 'not_finite', 'NaN or infinity'),
    (b'{"instances": [[' + b', '.join([b'1'] * 63) + b', -Infinity]]}', None, 400, 'not_finite', 'NaN or infinity'),
    (b'{"instances": [[' + b', '.join([b'1'] * 63) + b', 1e999]]}', None, 400, 'not_finite', 'NaN or infinity'),
    ({'instances': [[1] * 63 + ['7']]}, None, 400, 'bad_type', "instance 0, value 63: '7' is not a number"),
    ({'instances': [[1] * 63 + [None]]}, None, 400, 'bad_type', 'value 63: None is not a number'),
    ({'instances': [[1] * 63 + [300]]}, None, 400, 'out_of_range', 'outside [0, 16]'),
    ({'instances': [[-1] * 64]}, None, 400, 'out_of_range', 'outside [0, 16]'),
    ({'instances': []}, None, 400, 'empty', '"instances" is empty'),
    ({'instances': 'seven'}, None, 400, 'bad_type', '"instances" must be a list'),
    ({'signature_name': 'serving_default'}, None, 400, 'bad_request', 'missing "instances"'),
    ({'instances': [[1] * 64], 'signature_name': 'x'}, None, 400, 'unknown_signature', "no signature 'x'"),
    (b'<xml/>', None, 400, 'not_json', 'not valid JSON'),
    (b'\x80\x81\xff', None, 400, 'not_json', 'not valid JSON'),
    ({'instances': [[1] * 64]}, '/v1/models/letters:predict', 404, 'unknown_model', "no model named 'letters'"),
    ({'instances': [[1] * 64]}, '/v1/models/digits/labels/canary:predict', 404, 'unknown_label', "no version is labelled 'canary'"),
    ({'instances': [[1] * 64]}, '/v1/models/digits/versions/99999:predict', 404, 'unknown_version', "version '99999' is not deployed"),
    ({'instances': [[1] * 64]}, '/v2/predict', 404, 'unknown_endpoint', 'no such endpoint'),
]


def test_bad_input_gets_a_clear_4xx_is_counted_and_the_server_lives(registry, tmp_path):
    st, X, y = registry
    with _server(st, tmp_path) as srv:
        for body, path, status, kind, words in BAD:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = httpx.post(srv.url + (path or '/v1/models/digits:predict'), content=content, headers={'content-type': 'application/json'})
            assert r.status_code == status, (body, r.status_code, r.text)
            msg = r.json()['error']
            assert words in msg and 'Traceback' not in msg, (body, msg)
        # a body over the limit (1 MiB by default) is refused before it is read whole
        from test_hostile import oversized_post
        head, rest = oversized_post(srv.port)
        assert head.startswith(b'HTTP/1.1 413') and 'over the limit' in json.loads(rest)['error']
        # too many instances in one request
        r = _predict(srv.url, np.ones((1500, 64)))
        assert r.status_code == 413 and 'the limit is 1024' in r.json()['error']
        # still serving
        ok = _predict(srv.url, X[:1])
        assert ok.status_code == 200
        # feedback that makes no sense
        r = httpx.post(srv.url + '/v1/feedback', json={'request_id': ok.json()['request_id'], 'labels': [11]}, headers={'Authorization': f'Bearer {srv.feedback_token}'})
        assert r.status_code == 400 and 'labels must be a list of class labels (0, 1, 2' in r.json()['error']
        # every refusal was counted by kind
        counts = httpx.get(srv.url + '/stats').json()['counts']
        for kind in ('bad_shape', 'bad_type', 'not_finite', 'out_of_range', 'empty', 'not_json', 'unknown_model', 'unknown_label', 'too_large', 'bad_feedback'):
            assert counts.get(f'rejected:{kind}', 0) >= 1, (kind, counts)
        assert srv.proc.poll() is None
        from mlops_nb.serving.metrics import parse_metrics
        m = parse_metrics(httpx.get(srv.url + '/metrics').text)
        for kind in ('bad_shape', 'not_finite', 'unknown_model', 'too_large'):
            assert m[('mlops_nb_rejected_total', (('kind', kind),))] == counts[f'rejected:{kind}'], kind
        assert sum(v for (n, l), v in m.items() if n == 'mlops_nb_requests_total') == 1
        assert m[('mlops_nb_in_flight_requests', ())] == 0
    from mlops_nb.serving.predlog import read_rejections
    rej = read_rejections(tmp_path/'serving'/'predictions.sqlite')
    assert len(rej) >= len(BAD) + 3 and (rej['status'] >= 400).all()


def test_admin_calls_need_the_token(registry, tmp_path):
    st, X, y = registry
    with _server(st, tmp_path) as srv:
        for method, path in [('GET', '/admin/config'), ('POST', '/admin/deploy'), ('POST', '/admin/switch'), ('POST', '/admin/rollback'),
                             ('POST', '/admin/promote'), ('POST', '/admin/evaluate'), ('POST', '/admin/faults')]:
            for headers in ({}, {'Authorization': 'Bearer wrong'}, {'Authorization': srv.token}):
                r = httpx.request(method, srv.url + path, headers=headers, json={})
                assert r.status_code == 401 and 'Authorization: Bearer' in r.json()['error'], (path, headers, r.text)
        assert srv.admin.config()['config']['strategy'] == 'single'
        # unknown fields are named, not ignored
        r = httpx.post(srv.url + '/admin/deploy', headers={'Authorization': f'Bearer {srv.token}'}, json={'stratgy': 'canary'})
        assert r.status_code == 400 and "unknown fields ['stratgy']" in r.json()['error']


def test_shadow_returns_the_human_decision_and_logs_the_candidate(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    from mlops_nb.serving.phase import shadow_report
    from mlops_nb.serving.predlog import read_log
    challenger = st.alias('challenger')
    with _server(st, tmp_path) as srv:
        srv.admin.deploy('shadow', str(challenger.id), reason='test')
        # the human's decision is the answer, even where the model would say something else
        wrong = (y[:20] + 1) % 10
        r = _predict(srv.url, X[:20], decisions=wrong.tolist()).json()
        assert [p['class'] for p in r['predictions']] == wrong.tolist() and all(p['source'] == 'human' for p in r['predictions'])
        df = replay(srv.url, X, y, 200, human=True, feedback=0, concurrency=4)
        assert (df['status'] == 200).all()
        assert httpx.get(srv.url + '/v1/models/digits/labels/shadow').json()['model_version_status'][0]['version'] == str(challenger.id)
    log = read_log(tmp_path/'serving'/'predictions.sqlite')
    summary, per_class = shadow_report(log)
    answered = int((log['status'] == 'ok').sum())  # the rules discard a few serving images: they have no shadow prediction
    assert answered > 200 and summary['requests'] == answered and summary['human_decisions'] == answered
    assert len(per_class) == 10
    assert (log['shadow_version'] == challenger.id).all() and log['shadow_predicted'].notna().all()
    # the shadow prediction logged is the candidate's own answer for the logged image, and the report's arithmetic is right
    from mlops_nb.modeling.export import LiteModel
    from mlops_nb.data.ingest import PIXELS
    ok = read_log(tmp_path/'serving'/'predictions.sqlite', features=True).query("status == 'ok'")
    own = LiteModel(Path(challenger.uri)/'model.tflite').predict(ok[PIXELS].to_numpy(np.float32) / 16).argmax(1)
    assert (ok['shadow_predicted'].astype(int).to_numpy() == own).all()
    human = ok[ok['decision_source'] == 'human']
    assert summary['accuracy_vs_human'] == pytest.approx((human['shadow_predicted'].astype(int) == human['decision'].astype(int)).mean())


def test_canary_routes_by_key_ramps_while_guardrails_hold_and_promotes(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    from mlops_nb.serving.routing import bucket
    champion, challenger = st.alias('champion'), st.alias('challenger')
    with _server(st, tmp_path) as srv:
        a = srv.admin
        d = a.deploy('canary', 'challenger', ramp=[100, 500, 1000], guardrails={'min_requests': 30}, run_id='canary-test')
        assert d['config']['share'] == 100 and d['config']['candidate'] == challenger.id
        # the same key always lands on the same arm, and the arm follows the key's bucket
        for key in ('alice', 'bob', 'carol', 'dave', 'erin'):
            arms = {_predict(srv.url, X[:1], key=key).json()['arm'] for _ in range(3)}
            assert arms == {'canary' if bucket(key) < 100 else 'stable'}, (key, arms)
        verdicts = []
        for _ in range(8):
            replay(srv.url, X, y, 400, feedback=0.5, concurrency=4, feedback_token=srv.feedback_token)
            e = a.evaluate(run_id='canary-test')
            verdicts.append(e['verdict'])
            if e['verdict'] == 'promote': break
        assert verdicts.count('advance') == 2 and verdicts[-1] == 'promote', verdicts
        assert a.config()['config']['stable'] == challenger.id
    # every change is a DeploymentDecision linked to the models involved
    decisions = st.artifacts('DeploymentDecision', 'canary-test')
    assert [x.get('action') for x in decisions] == ['deploy', 'advance', 'advance', 'promote']
    down = {x.id for x in st.downstream(challenger.id).artifacts()}
    assert {x.id for x in decisions} <= down and {x.id for x in decisions} <= {x.id for x in st.downstream(champion.id).artifacts()}


def test_a_failing_canary_is_rolled_back_automatically(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    with _server(st, tmp_path, guard_interval=0.5) as srv:
        a = srv.admin
        a.deploy('canary', 'challenger', share=500, run_id='auto-rollback')
        a.faults({'canary': {'error_rate': 0.3}}, run_id='auto-rollback')
        df = replay(srv.url, X, y, 400, feedback=0, concurrency=4)
        assert (df['status'] == 200).all()  # a failed canary request is answered by the stable model
        deadline = time.time() + 20
        while time.time() < deadline and a.config()['config']['share'] != 0: time.sleep(0.2)
        cfg = a.config()['config']
        assert cfg['share'] == 0 and cfg['status'] == 'rolled_back' and 'error rate' in cfg['reason'], cfg
        assert 'automatic rollback' in cfg['reason']
        # after the rollback every request is served by the stable model
        assert {_predict(srv.url, X[:1], key=f"k{i}").json()['arm'] for i in range(30)} == {'stable'}
    assert st.latest_artifact('DeploymentDecision', run_id='auto-rollback').get('action') == 'rollback'


def test_blue_green_switch_under_load_loses_no_request(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    from mlops_nb.serving.predlog import read_log
    with _server(st, tmp_path, workers=2) as srv:
        a = srv.admin
        blue = a.config()['config']['stable']
        a.deploy('bluegreen', 'challenger')
        done, stop = [], threading.Event()
        def load():  # traffic in rounds of 200 until told to stop: the switches follow its progress, not the clock
            k = 0
            while not stop.is_set() and k < 60:
                done.append(replay(srv.url, X, y, 200, feedback=0, concurrency=8, seed=k)); k += 1
        t = threading.Thread(target=load); t.start()
        def after(rounds):
            deadline = time.time() + 120
            while len(done) < rounds and t.is_alive() and time.time() < deadline: time.sleep(0.05)
            assert len(done) >= rounds, f"the load stopped after {len(done)} rounds"
        after(2); t1 = time.time(); a.switch()
        after(4); a.rollback()
        after(6); t3 = time.time(); a.switch()
        after(9); stop.set(); t.join()
        df = pd.concat(done, ignore_index=True)
        assert (df['status'] == 200).all(), df[df['status'] != 200].head()
        # requests answered before the first switch went to blue; requests sent well after the last one (both workers
        # re-read the configuration every 0.25 s) go to green
        assert (df[df['t'] + df['client_ms'] / 1000 < t1]['arm'] == 'blue').all()
        late = df[df['t'] > t3 + 0.5]
        assert len(late) and (late['arm'] == 'green').all(), late['arm'].value_counts()
        # both workers follow the switch: after it, no request lands on blue
        time.sleep(0.3)
        assert {_predict(srv.url, X[:1], key=f"k{i}").json()['model_version'] for i in range(40)} == {st.alias('challenger').id}
        a.rollback()
        time.sleep(0.6)
        assert {_predict(srv.url, X[:1], key=f"k{i}").json()['model_version'] for i in range(40)} == {blue}
        answered = len(df) + 80
        # Prometheus metrics add up over both workers (multiprocess mode); each worker publishes its tallies every 0.5 s,
        # so the totals are exact once both have published: poll until they are (or a deadline passes)
        from mlops_nb.serving.metrics import parse_metrics
        deadline = time.time() + 15
        while True:
            m = parse_metrics(httpx.get(srv.url + '/metrics').text)
            total = sum(v for (name, labels), v in m.items() if name == 'mlops_nb_requests_total')
            if total == answered or time.time() > deadline: break
            time.sleep(0.2)
        assert total == answered, total
        assert {dict(labels)['arm'] for (name, labels), v in m.items() if name == 'mlops_nb_requests_total' and v} == {'blue', 'green'}
    # nothing acknowledged is lost: SIGTERM flushed both workers' logs
    log = read_log(tmp_path/'serving'/'predictions.sqlite')
    assert log['request_id'].nunique() == answered


def _register(st, folder: Path, name: str) -> int:
    "Register a folder as a Model artifact (no blessing)."
    from mlops_nb.core.tracking import content_hash
    if st.get_run('test-models') is None: st.put_run('test-models')
    x = st.start_execution('test.register', 'test-models')
    a = st.record_output(x.id, 'Model', str(folder), content_hash(folder), run_id='test-models', experiment=name)
    st.finish_execution(x.id)
    return a.id


def test_a_green_that_does_not_load_or_check_is_refused_and_blue_keeps_serving(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.modeling.export import export_model
    from mlops_nb.serving.control import DeploymentError
    from mlops_nb.modeling.train import TrainConfig, build_model
    import shutil
    broken = tmp_path/'broken'; broken.mkdir()
    (broken/'model.tflite').write_bytes(b'not a model')
    untrained = tmp_path/'untrained'; untrained.mkdir()
    export_model(build_model(TrainConfig(arch='mlp', seed=3), 10, (8, 8, 1)), untrained)
    shutil.copy(Path(st.alias('champion').uri)/'contract.json', untrained)   # trained under the digits' contract (it says so; it learned nothing)
    ids = _register(st, broken, 'broken'), _register(st, untrained, 'untrained')
    with _server(st, tmp_path/'strict') as srv:  # without --allow-unblessed: refused for the missing blessing
        with pytest.raises(DeploymentError, match='has no positive ModelBlessing'):
            srv.admin.deploy('bluegreen', str(ids[1]))
    with _server(st, tmp_path/'lax', allow_unblessed=True) as srv:
        a = srv.admin
        before = a.config()['config']
        for mid, words in zip(ids, ('does not load', 'below the floor')):
            with pytest.raises(DeploymentError, match=words) as e:
                a.deploy('bluegreen', str(mid))
            assert e.value.status == 422
        assert a.config()['config'] == before
        assert _predict(srv.url, X[:3]).status_code == 200
        with pytest.raises(DeploymentError, match='needs a blue-green deployment'):
            a.switch()
        # a model whose .tflite is broken but whose SavedModel loads is served from the SavedModel (the fallback)
        fallback = tmp_path/'fallback'
        shutil.copytree(st.alias('champion').uri, fallback)
        (fallback/'model.tflite').write_bytes(b'broken')
        fid = _register(st, fallback, 'fallback')
        a.deploy('bluegreen', str(fid))
        slot = a.config()['models'][str(fid)]
        assert slot['kind'] == 'saved_model' and 'LiteRT unavailable' in slot['note'] and slot['check']['accuracy'] > 0.9
        r = _predict(srv.url, X[:4], path='/v1/models/digits/labels/green:predict').json()
        assert r['model_version'] == fid and [p['class'] for p in r['predictions']] == [p['class'] for p in _predict(srv.url, X[:4]).json()['predictions']]


def test_configuration_survives_a_restart_and_is_never_half_written(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.routing import load_config
    with _server(st, tmp_path) as srv:
        srv.admin.deploy('canary', 'challenger', share=250)
    path = tmp_path/'serving'/'deployment.json'
    cfg = load_config(path)
    assert cfg.strategy == 'canary' and cfg.share == 250
    assert not list(path.parent.glob('.deployment.json.*.tmp'))
    with _server(st, tmp_path) as srv:  # a new process picks up the live configuration
        c = srv.admin.config()['config']
        assert (c['strategy'], c['share'], c['generation']) == ('canary', 250, cfg.generation)


def test_cli_serve_and_deploy(registry, tmp_path):
    st, X, y = registry
    out = cli('serve', '--help')
    assert out.returncode == 0 and '--allow-unblessed' in out.stdout and '127.0.0.1' in out.stdout
    from mlops_nb.serving.process import free_port
    import os, subprocess, sys
    port = free_port()
    env = {**os.environ}; env.pop('MLOPS_NB_ADMIN_TOKEN', None)
    proc = subprocess.Popen([str(Path(sys.executable).parent/'mlops_nb'), 'serve', '--port', str(port), '--state-dir', str(tmp_path/'s'),
                             '--store', st.uri], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f'http://127.0.0.1:{port}'
        deadline, ready = time.time() + 90, False
        while not ready and time.time() < deadline and proc.poll() is None:
            try: ready = httpx.get(url + '/readyz').status_code == 200
            except httpx.HTTPError: pass
            if not ready: time.sleep(0.1)
        assert ready, f"mlops_nb serve did not become ready (exit code {proc.poll()})"
        assert (tmp_path/'s'/'admin.token').stat().st_mode & 0o777 == 0o600  # a generated token only its owner reads
        common = ('--url', url, '--state-dir', tmp_path/'s')
        status = cli('deploy', 'status', *common, env=env)
        assert status.returncode == 0 and json.loads(status.stdout)['config']['strategy'] == 'single'
        out = cli('deploy', 'shadow', 'challenger', '--reason', 'cli test', *common, env=env)
        assert out.returncode == 0 and json.loads(out.stdout)['config']['strategy'] == 'shadow', out.stderr
        bad = cli('deploy', 'switch', *common, env=env)
        assert bad.returncode == 1 and 'needs a blue-green deployment' in bad.stderr
        nok = cli('deploy', 'status', '--url', url, '--token', 'wrong', env=env)
        assert nok.returncode == 1 and 'Authorization' in nok.stderr
    finally:
        proc.terminate(); proc.wait(30)


# --- models of other data: the server reads and answers requests as each model's data contract says -------------------

@pytest.fixture(scope='module')
def contract_models(tmp_path_factory):
    """A store with two real models of other data, unblessed, with no pipeline behind them: an MLP on 1,000 MNIST digits
    (28×28 on 0–255) and an MLP on a hand-made table with a numeric and a categorical feature and word classes."""
    from mlops_nb.core.store import Store
    from mlops_nb.core.tracking import content_hash
    from mlops_nb.data.contract import DataContract, Feature, contract_of, save_contract
    from mlops_nb.data.ingest import load_mnist_dataset
    from mlops_nb.modeling.export import export_model
    from mlops_nb.modeling.train import TrainConfig, to_features, to_images, train
    root = tmp_path_factory.mktemp('contract-models')
    st = Store(f"sqlite:///{root/'mlmd.sqlite'}"); st.put_run('contracts')
    def register(model, contract, name):
        out = root/name; out.mkdir()
        export_model(model, out); save_contract(contract, out)
        x = st.start_execution('test.train', 'contracts')
        a = st.record_output(x.id, 'Model', str(out), content_hash(out), run_id='contracts'); st.finish_execution(x.id)
        return a
    ds = load_mnist_dataset()
    mnist = contract_of(ds)
    f = ds.frame.sample(1200, random_state=0)
    X, y = to_images(f, contract=mnist), f['label'].to_numpy()
    model, _ = train(TrainConfig(arch='mlp', epochs=3, seed=0), X[:1000], y[:1000], X[1000:], y[1000:], progress=False, classes=mnist.n_classes)
    mnist_art = register(model, mnist, 'mnist-mlp')
    rng = np.random.default_rng(0)
    t = pd.DataFrame({'size': rng.uniform(0, 10, 600), 'colour': rng.choice(['blue', 'red'], 600)})
    labels = ((t['size'] > 5) ^ (t['colour'] == 'red')).astype(int).to_numpy()
    shop = DataContract('structured', (Feature('size', 'numeric', 0.0, 10.0), Feature('colour', 'categorical', vocabulary=('blue', 'red'))),
                        ('no', 'yes'), ('no', 'yes'), source='shop',
                        normalisation={'method': 'standardise', 'mean': {'size': float(t['size'].mean())}, 'std': {'size': float(t['size'].std(ddof=0))}})
    Xt = to_features(t, shop)
    model, _ = train(TrainConfig(arch='mlp', epochs=2, seed=0), Xt[:500], labels[:500], Xt[500:], labels[500:], progress=False, classes=2)
    table_art = register(model, shop, 'shop-mlp')
    return st, mnist_art, table_art, f.iloc[1000:], mnist, t, shop


def test_a_28x28_model_answers_its_own_images_with_the_datas_labels_and_refuses_a_digit(contract_models, tmp_path):
    st, mnist_art, _, test, contract, _, _ = contract_models
    from mlops_nb.modeling.export import LiteModel
    X = test[contract.feature_names].to_numpy(np.float32)[:4]
    with _server(st, tmp_path, model=str(mnist_art.id), allow_unblessed=True, extra=('--min-accuracy', '0.5')) as srv:
        url = srv.url + '/v1/models/mnist:predict'   # named after its data source
        nested = httpx.post(url, json={'instances': [X[0].reshape(28, 28).tolist(), X[1].reshape(28, 28).tolist()]})
        flat = httpx.post(url, json={'instances': X[:2].tolist(), 'signature_name': 'serving_default'})
        assert nested.status_code == 200 and flat.status_code == 200, (nested.text, flat.text)
        P = LiteModel(Path(mnist_art.uri)/'model.tflite').predict(X[:2] / 255)
        for r in (nested, flat):
            preds = r.json()['predictions']
            np.testing.assert_allclose([p['probabilities'] for p in preds], P, atol=1e-6)
            assert [p['class'] for p in preds] == list(P.argmax(1)) and [p['label'] for p in preds] == [contract.classes[k] for k in P.argmax(1)]
        # an 8×8 digit is refused, naming the instance and the shape this model takes
        r = httpx.post(url, json={'instances': [X[0].tolist(), [0] * 64]})
        assert r.status_code == 400 and 'instance 1: expected 784 values (or a 28×28 array), got 64' in r.json()['error'], r.text
        r = httpx.post(url, json={'instances': [[[1] * 8] * 8]})
        assert r.status_code == 400 and 'expected a 28×28 array' in r.json()['error']
        r = httpx.post(url, json={'instances': [[300] * 784]})
        assert r.status_code == 400 and 'outside [0, 255]' in r.json()['error']
        # another signature is refused, never ignored
        r = httpx.post(url, json={'instances': X[:1].tolist(), 'signature_name': 'other'})
        assert r.status_code == 400 and "no signature 'other'" in r.json()['error'] and 'serving_default' in r.json()['error']
        # TF Serving's columnar form is answered by output
        r = httpx.post(url, json={'inputs': X[:2].tolist()}).json()
        assert 'predictions' not in r and r['outputs']['class'] == list(P.argmax(1)) and len(r['outputs']['probabilities']) == 2
        # metadata: the signature as TF Serving gives it, and the contract; the model list
        m = httpx.get(srv.url + '/v1/models/mnist/metadata').json()
        sig = m['metadata']['signature_def']['signature_def']['serving_default']
        assert m['model_spec']['name'] == 'mnist' and m['model_spec']['version'] == str(mnist_art.id)
        assert sig['method_name'] == 'tensorflow/serving/predict' and sig['inputs']['images']['dtype'] == 'DT_FLOAT'
        assert [d['size'] for d in sig['inputs']['images']['tensor_shape']['dim']] == ['-1', '28', '28', '1']
        assert m['data_contract']['classes'] == list(contract.classes) and m['data_contract']['scale'] == 255.0
        assert httpx.get(srv.url + f'/v1/models/mnist/versions/{mnist_art.id}/metadata').json() == m
        models = httpx.get(srv.url + '/v1/models').json()['models']
        assert [x['name'] for x in models] == ['mnist'] and models[0]['model_version_status'][0]['state'] == 'AVAILABLE'
        assert httpx.get(srv.url + '/v1/models/digits/metadata').status_code == 404
        # feedback takes the data's labels
        rid = flat.json()['request_id']
        r = httpx.post(srv.url + '/v1/feedback', json={'request_id': rid, 'labels': [int(test['label'].iloc[0]), 12]}, headers={'Authorization': f'Bearer {srv.feedback_token}'})
        assert r.status_code == 400 and 'class labels (0, 1, 2' in r.json()['error']


def test_a_table_model_answers_rows_as_lists_or_objects_and_names_a_wrong_feature(contract_models, tmp_path):
    st, _, table_art, _, _, t, shop = contract_models
    from mlops_nb.modeling.export import LiteModel
    from mlops_nb.modeling.train import to_features
    rows = t.iloc[:3]
    want = LiteModel(Path(table_art.uri)/'model.tflite').predict(to_features(rows, shop))
    with _server(st, tmp_path, model=str(table_art.id), allow_unblessed=True) as srv:
        url = srv.url + '/v1/models/shop:predict'
        as_lists = httpx.post(url, json={'instances': rows[['size', 'colour']].values.tolist()})
        as_objects = httpx.post(url, json={'instances': rows[['colour', 'size']].to_dict('records')})
        columnar = httpx.post(url, json={'inputs': {'size': rows['size'].tolist(), 'colour': rows['colour'].tolist()}})
        for r in (as_lists, as_objects):
            assert r.status_code == 200, r.text
            preds = r.json()['predictions']
            np.testing.assert_allclose([p['probabilities'] for p in preds], want, atol=1e-5)
            assert [p['label'] for p in preds] == [shop.classes[k] for k in want.argmax(1)]
        assert columnar.status_code == 200 and columnar.json()['outputs']['label'] == [shop.classes[k] for k in want.argmax(1)]
        for body, words in [({'instances': [{'size': 3.0}]}, "instance 0: feature 'colour' is missing"),
                            ({'instances': [{'size': 3.0, 'colour': 'red', 'weight': 2}]}, "instance 0: unknown feature 'weight'"),
                            ({'instances': [[3.0, 'red'], [4.0, 'green']]}, "instance 1, feature 'colour': 'green' is not a value the model was trained on"),
                            ({'instances': [[3.0]]}, "feature 'colour' is missing"),
                            ({'inputs': {'size': [1.0], 'colour': ['red'], 'age': [3]}}, "unknown feature 'age'")]:
            r = httpx.post(url, json=body)
            assert r.status_code == 400 and words in r.json()['error'], (body, r.text)
        # decisions are the data's words
        r = httpx.post(url, json={'instances': [[3.0, 'red']], 'decisions': ['yes']}).json()['predictions'][0]
        assert (r['label'], r['class'], r['source']) == ('yes', 1, 'human')
        assert httpx.post(url, json={'instances': [[3.0, 'red']], 'decisions': [1]}).status_code == 400
        sig = httpx.get(srv.url + '/v1/models/shop/metadata').json()['metadata']['signature_def']['signature_def']['serving_default']
        assert {k: v['dtype'] for k, v in sig['inputs'].items()} == {'size': 'DT_FLOAT', 'colour': 'DT_STRING'}
