"""Hostile but fair traffic and faults against a real server process (loopback only, bounded loads): each test sends
the input or the fault that once broke something, and asserts what the server now guarantees."""
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import cli
from test_server import _predict, _server, registry  # noqa: F401  (the module fixture: a store with a champion and a challenger)


def _log(tmp_path, **kw):
    from mlops_nb.serving.predlog import read_log
    return read_log(tmp_path/'serving'/'predictions.sqlite', **kw)


def _feedback(srv, doc, token=None):
    "POST /v1/feedback with the feedback token (or `token`; '' sends no Authorization header)."
    token = srv.feedback_token if token is None else token
    return httpx.post(srv.url + '/v1/feedback', json=doc, timeout=30, headers={'Authorization': f'Bearer {token}'} if token else {})


def test_a_poisoned_field_is_refused_at_the_edge_and_costs_no_one_else_a_record(registry, tmp_path):
    st, X, y = registry
    honest = []
    with _server(st, tmp_path) as srv:
        rid = _predict(srv.url, X[:2]).json()['request_id']
        honest.append(rid)
        poisons = [{'key': {'not': 'text'}}, {'key': [1, 2]}, {'key': 2**63}, {'key': 7}, {'key': 'k' * 300}]
        for i, extra in enumerate(poisons * 4):
            r = httpx.post(srv.url + '/v1/models/digits:predict', json={'instances': [X[i].tolist()], **extra})
            assert r.status_code == 400 and '"key" must be a string' in r.json()['error'], r.text
            ok = _predict(srv.url, X[i:i + 1], key=f'user-{i}')
            assert ok.status_code == 200
            honest.append(ok.json()['request_id'])
        r = httpx.post(srv.url + '/v1/models/digits:predict', json={'instances': [X[0].tolist()]}, headers={'X-Request-Key': 'h' * 300})
        assert r.status_code == 400 and 'the limit is 256' in r.json()['error']
        # a feedback index of 2**63 (which SQLite cannot store) is refused, not acknowledged and then lost with its batch
        r = _feedback(srv, {'request_id': rid, 'label': 3, 'index': 2**63})
        assert r.status_code == 400 and 'fall outside it' in r.json()['error']
        assert _feedback(srv, {'request_id': rid, 'labels': [3, 4]}).json() == {'accepted': 2}
        stats = httpx.get(srv.url + '/stats').json()
        assert stats['counts']['rejected:bad_key'] == 21 and 'rejected:internal' not in stats['counts']
    log = _log(tmp_path)
    # every acknowledged request is in the log, with its feedback
    assert set(honest) == set(log['request_id']) and len(log) == len(honest) + 1
    assert log.loc[log['request_id'] == rid, 'feedback'].tolist() == [3.0, 4.0]


def test_feedback_needs_its_token_and_a_request_the_server_answered(registry, tmp_path):
    st, X, y = registry
    with _server(st, tmp_path) as srv:
        d = _predict(srv.url, X[:3]).json()
        rid = d['request_id']
        for token in ('', 'wrong'):
            r = _feedback(srv, {'request_id': rid, 'labels': [1, 2, 3]}, token=token)
            assert r.status_code == 401 and 'feedback token' in r.json()['error']
        assert _feedback(srv, {'request_id': rid, 'labels': [1, 2, 3]}, token=srv.token).status_code == 202   # the admin token too
        # one answer does not reveal the others: the next counter with this id's signature is not an id the server issued
        stem, n, sig = rid.rsplit('-', 2)
        prefix, counter = stem.rsplit('-', 1)
        for forged in (f"{prefix}-{int(counter, 16) + 1:x}-{n}-{sig}", f"{stem}-9-{sig}", f"{prefix}-{counter}"):
            r = _feedback(srv, {'request_id': forged, 'labels': [1]})
            assert r.status_code == 404 and 'not a request id this server issued' in r.json()['error'], forged
        r = _feedback(srv, {'request_id': rid, 'label': 1, 'index': 3})
        assert r.status_code == 400 and 'had 3 instance(s)' in r.json()['error']
        # bounded: 240 items × 1,000 labels (once 728 KB acknowledged as 240,000 labels) is refused whole
        big = {'items': [{'request_id': rid, 'labels': [1] * 1000} for _ in range(240)]}
        r = _feedback(srv, big)
        assert r.status_code == 413 and 'labels' in r.json()['error'], r.text
        r = _feedback(srv, {'items': [{'request_id': rid, 'label': 1, 'index': 0}] * 1500})
        assert r.status_code == 413 and 'the limit is 1024' in r.json()['error']
        stats = httpx.get(srv.url + '/stats').json()['counts']
    log = _log(tmp_path)
    assert log['feedback'].tolist() == [1.0, 2.0, 3.0] and stats['feedback'] == 3


def test_forged_feedback_cannot_roll_back_a_healthy_canary(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    with _server(st, tmp_path) as srv:
        srv.admin.deploy('canary', 'challenger', share=500, guardrails={'min_requests': 30, 'min_feedback': 20}, auto=False)
        df = replay(srv.url, X, y, 300, concurrency=4)
        canary = df[(df['arm'] == 'canary') & df['request_id'].notna()]
        # an attacker labels every canary answer wrong, without the token, and with ids of their own making
        wrong = [{'request_id': r, 'labels': [(int(p) + 1) % 10]} for r, p in zip(canary['request_id'], canary['predicted'].fillna(0))]
        assert _feedback(srv, {'items': wrong}, token='guess').status_code == 401
        forged = [{'request_id': f"{r.rsplit('-', 1)[0]}-{'0' * 16}", 'labels': [1]} for r in canary['request_id']]
        assert _feedback(srv, {'items': forged}).status_code == 404
        e = srv.admin.evaluate()
        assert e['verdict'] != 'rollback', e
        assert _log(tmp_path)['feedback'].isna().all()


def test_blue_green_cycles_under_load_never_fail_a_request(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.client import replay
    models = [st.alias('champion').id, st.alias('challenger').id]
    with _server(st, tmp_path) as srv:   # one worker: a configuration change lands between two lines of a request
        a = srv.admin
        stable = a.config()['config']['stable']
        done, stop = [], threading.Event()
        def load():
            k = 0
            while not stop.is_set() and k < 200:
                done.append(replay(srv.url, X, y, 100, concurrency=8, seed=k)); k += 1
        t = threading.Thread(target=load); t.start()
        try:
            for cycle in range(4):   # deploy → switch → rollback → switch → promote, again and again, while requests arrive
                other = next(m for m in models if m != stable)
                a.deploy('bluegreen', str(other)); a.switch(); a.rollback(); a.switch()
                # a request whose body arrives after the promote: it started on the blue-green configuration and ends on it
                status, answer = split_request(srv.port, {'instances': [X[cycle].tolist()], 'key': 'late'}, a.promote)
                assert status == 200 and answer['arm'] == 'green' and answer['model_version'] == other, answer
                stable = other
                n = len(done)
                while len(done) < n + 1 and t.is_alive(): time.sleep(0.02)
        finally:
            stop.set(); t.join()
        df = pd.concat(done, ignore_index=True)
        assert len(df) >= 400 and (df['status'] == 200).all(), df[df['status'] != 200].head()
        counts = httpx.get(srv.url + '/stats').json()['counts']
        assert 'rejected:internal' not in counts and counts['decision:promote'] == 4


def split_request(port: int, doc: dict, between) -> tuple[int, dict]:
    "POST a predict request in two parts, its headers first and its body after `between()` has run; the status and the answer."
    body = json.dumps(doc).encode()
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        s.sendall(b'POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                  + f'Content-Length: {len(body)}\r\nConnection: close\r\n\r\n'.encode())
        time.sleep(0.3)   # the server has read the configuration and waits for the body
        between()
        s.sendall(body)
        data = b''
        while chunk := s.recv(65536): data += chunk
    head, _, rest = data.partition(b'\r\n\r\n')
    return int(head.split()[1]), json.loads(rest)


def test_sigterm_while_the_log_is_locked_spills_every_record_and_the_next_start_writes_them(registry, tmp_path):
    st, X, y = registry
    srv = _server(st, tmp_path)
    path = tmp_path/'serving'/'predictions.sqlite'
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute('BEGIN EXCLUSIVE')   # someone's SQLite shell holds the file
    try:
        ids = [_predict(srv.url, X[i:i + 1], key=f'u{i}').json()['request_id'] for i in range(40)]
        t = time.monotonic()
        code = srv.stop()
        took = time.monotonic() - t
    finally:
        holder.execute('ROLLBACK'); holder.close()
    assert code in (0, -signal.SIGTERM) and took < 25, (code, took)   # uvicorn re-raises SIGTERM once it has shut down
    spill = path.with_name(path.name + '.spill.jsonl')
    lines = spill.read_text().splitlines()
    assert sorted({json.loads(l)['row'][0] for l in lines if json.loads(l)['table'] == 'predictions'}) == sorted(ids)
    assert f'spilled to {spill}' in srv.log_tail(50) and spill.stat().st_mode & 0o777 == 0o600
    with _server(st, tmp_path) as again:   # the next start writes them and removes the spill file
        assert again.admin.config()['config']['stable']
    assert not spill.exists() and sorted(_log(tmp_path)['request_id']) == sorted(ids)


@pytest.mark.parametrize('point', ['pending-written', 'decision-recorded'])
def test_a_crash_inside_a_change_never_leaves_store_and_live_configuration_disagreeing(registry, tmp_path, point):
    st, X, y = registry
    from mlops_nb.serving.routing import load_config
    run = f'crash-{point}-{os.getpid()}-{time.time_ns()}'   # its own run: the store may hold other tests' decisions
    with _server(st, tmp_path, run_id=run) as srv: before = srv.admin.config()['config']
    srv = _server(st, tmp_path, run_id=run, env={'MLOPS_NB_CRASH_AT': point})
    with pytest.raises(Exception):
        srv.admin.deploy('canary', 'challenger', share=100)   # the process dies with SIGKILL inside the change
    srv.proc.wait(30)
    assert srv.proc.returncode == -signal.SIGKILL
    state = tmp_path/'serving'
    assert (state/'deployment.pending.json').is_file()
    with _server(st, tmp_path, run_id=run) as srv:
        live = srv.admin.config()['config']
        assert _predict(srv.url, X[:1], key='k').status_code == 200
    last = st.latest_artifact('DeploymentDecision', run_id=run)
    # the live configuration is the one the store recorded last, whichever side of the record the crash fell on
    assert (last.get('generation'), last.get('strategy')) == (live['generation'], live['strategy']) == (load_config(state/'deployment.json').generation, live['strategy'])
    assert live['strategy'] == ('canary' if point == 'decision-recorded' else before['strategy'])
    assert not (state/'deployment.pending.json').exists() and not list(state.glob('.deployment.json.*.tmp'))
    recorded = [Path(a.uri) for a in st.artifacts('DeploymentDecision', run) if Path(a.uri).parent == state/'decisions']
    assert sorted((state/'decisions').iterdir()) == sorted(recorded)   # no folder for a change the store did not record


def test_admin_values_of_the_wrong_type_are_refused_and_leave_nothing_behind(registry, tmp_path):
    st, X, y = registry
    with _server(st, tmp_path) as srv:
        srv.admin.deploy('canary', 'challenger', share=500, run_id='types')
        state = tmp_path/'serving'
        before, folders = (state/'deployment.json').read_text(), sorted((state/'decisions').iterdir())
        h = {'Authorization': f'Bearer {srv.token}'}
        for path, body, words in [('/admin/deploy', {'strategy': 'canary', 'candidate': 'challenger', 'guardrails': {'max_p99_ms': '50'}}, 'guardrails.max_p99_ms must be a number'),
                                  ('/admin/deploy', {'strategy': 'canary', 'candidate': 'challenger', 'share': '100'}, '"share" must be an integer'),
                                  ('/admin/deploy', {'strategy': 'canary', 'candidate': 'challenger', 'ramp': [10, 'x']}, '"ramp" must be a list of integers'),
                                  ('/admin/faults', {'faults': 'all'}, '"faults" must be an object'),
                                  ('/admin/faults', {'faults': {'canary': {'error_rate': 'half'}}}, 'faults[canary].error_rate must be a share'),
                                  ('/admin/rollback', {'reason': ['x']}, '"reason" must be a string'),
                                  ('/admin/switch', {'share': True}, '"share" must be an integer')]:
            r = httpx.post(srv.url + path, json=body, headers=h)
            assert r.status_code == 400 and words in r.json()['error'], (path, body, r.status_code, r.text)
        assert (state/'deployment.json').read_text() == before and sorted((state/'decisions').iterdir()) == folders
        # a non-string key under a canary, a Unicode digit in the version path, a feedback index that is a string: 4xx, never 500
        r = httpx.post(srv.url + '/v1/models/digits:predict', json={'instances': [X[0].tolist()], 'key': 12})
        assert r.status_code == 400
        r = httpx.post(srv.url + '/v1/models/digits/versions/%C2%B2:predict', json={'instances': [X[0].tolist()]})
        assert r.status_code == 404 and 'is not deployed' in r.json()['error']
        rid = _predict(srv.url, X[:1]).json()['request_id']
        assert _feedback(srv, {'request_id': rid, 'label': 1, 'index': '0'}).status_code == 400
        counts = httpx.get(srv.url + '/stats').json()['counts']
        assert 'rejected:internal' not in counts
        # the canary still evaluates: no value of the wrong type reached the configuration
        assert srv.admin.evaluate()['verdict'] in ('wait', 'advance', 'promote')


def test_rejections_are_stored_bounded_and_old_rows_expire(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.predlog import read_rejections
    retention = 5 / 86400   # five seconds
    with _server(st, tmp_path, extra=('--log-retention-days', str(retention))) as srv:
        for _ in range(20):
            r = httpx.get(srv.url + '/' + 'p' * 10_000)
            assert r.status_code == 404
        deadline = time.monotonic() + 10   # the log commits every 0.1 s
        while len(rej := read_rejections(tmp_path/'serving'/'predictions.sqlite')) < 20 and time.monotonic() < deadline: time.sleep(0.1)
        assert len(rej) == 20 and rej['endpoint'].str.len().max() <= 200 and rej['message'].str.len().max() <= 500
        old = [_predict(srv.url, X[:1]).json()['request_id'] for _ in range(5)]
        time.sleep(6)
        new = [_predict(srv.url, X[:1]).json()['request_id'] for _ in range(5)]
        # within the next five seconds the old rows go and the new ones are there
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            left = set(_log(tmp_path)['request_id'])
            if not left & set(old) and set(new) <= left: break
            time.sleep(0.1)
        assert not left & set(old) and set(new) <= left, (left, old, new)
    assert (tmp_path/'serving'/'predictions.sqlite').stat().st_size < 2_000_000
    assert (tmp_path/'serving'/'predictions.sqlite').stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize('http', ['httptools', 'h11'])
def test_slow_clients_cannot_take_the_server_down(registry, tmp_path, http):
    st, X, y = registry
    with _server(st, tmp_path, open_files=256, extra=('--request-timeout', '3', '--http', http)) as srv:
        slow = []
        for _ in range(400):   # more connections than file descriptors, each stuck in the middle of its headers
            s = socket.create_connection(('127.0.0.1', srv.port))
            s.sendall(b'POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n')
            slow.append(s)
        # a client that sends its request at once is answered
        for i in range(30):
            assert _predict(srv.url, X[i:i + 1]).status_code == 200
        # the slow ones are closed by the server: evicted, or at the request timeout
        deadline = time.monotonic() + 15
        for s in slow:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try: assert s.recv(100) == b''
            except ConnectionResetError: pass
            s.close()
        assert _predict(srv.url, X[:1]).status_code == 200
    log = (tmp_path/'serving'/'server.log').read_text()
    assert log.count('Traceback') <= 3 and len(log) < 50_000, log[-3000:]


@pytest.mark.parametrize('http', ['httptools', 'h11'])
def test_pipelined_requests_are_all_answered_in_order(registry, tmp_path, http):
    st, X, y = registry
    body = json.dumps({'instances': np.asarray(X[:3]).reshape(3, -1).tolist()}).encode()
    post = (b'POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\n\r\n%s' % (len(body), body))
    with _server(st, tmp_path, extra=('--http', http)) as srv:
        assert f'HTTP on {http}' in srv.log_tail(), srv.log_tail()
        with socket.create_connection(('127.0.0.1', srv.port), timeout=30) as s:
            s.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' + post + b'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n')
            data = b''
            while data.count(b'HTTP/1.1 ') < 3 or not data.rstrip().endswith(b'}'):
                chunk = s.recv(65536)
                assert chunk, f"the server closed the connection after {data.count(b'HTTP/1.1 ')} of 3 answers: {data[-300:]!r}"
                data += chunk
        answers = data.split(b'HTTP/1.1 ')[1:]
        assert [a[:3] for a in answers] == [b'200'] * 3, data[:500]
        assert b'predictions' in answers[1] and b'model_version_status' not in answers[1] and b'"name"' in answers[2], data[:2000]


def test_workers_stop_when_the_main_process_is_killed(registry, tmp_path):
    st, X, y = registry
    srv = _server(st, tmp_path, workers=2)
    pids = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client() as c: pids.add(c.get(srv.url + '/stats').json()['pid'])
    assert len(pids) == 2
    srv.kill()   # kill -9 of `mlops_nb serve --workers 2`
    deadline = time.monotonic() + 20
    def alive(pid):
        try: os.kill(pid, 0); return True
        except ProcessLookupError: return False
    while any(map(alive, pids)) and time.monotonic() < deadline: time.sleep(0.2)
    assert not any(map(alive, pids))
    with pytest.raises(httpx.ConnectError): httpx.get(srv.url + '/healthz', timeout=2)


def test_startup_problems_are_named_not_tracebacks(registry, tmp_path):
    st, X, y = registry
    from mlops_nb.serving.process import free_port
    def serve(state, *extra):
        return cli('serve', '--port', free_port(), '--state-dir', state, '--store', st.uri, *extra, timeout=120)
    (tmp_path/'a').mkdir(); (tmp_path/'a'/'admin.token').write_text('\n')
    env = {k: v for k, v in os.environ.items() if k != 'MLOPS_NB_ADMIN_TOKEN'}
    out = cli('serve', '--port', free_port(), '--state-dir', tmp_path/'a', '--store', st.uri, env=env, timeout=120)
    assert out.returncode != 0 and f"{tmp_path/'a'/'admin.token'} is empty" in out.stderr and 'Traceback' not in out.stderr, out.stderr
    (tmp_path/'b').mkdir(); (tmp_path/'b'/'predictions.sqlite').write_bytes(b'garbage' * 1000)
    out = serve(tmp_path/'b')
    assert out.returncode != 0 and 'predictions.sqlite: not a readable prediction log' in out.stderr and 'Traceback' not in out.stderr, out.stderr
    (tmp_path/'c').mkdir()
    from mlops_nb.serving.routing import DeploymentConfig, save_config
    save_config(DeploymentConfig(stable=999999), tmp_path/'c'/'deployment.json')
    out = serve(tmp_path/'c')
    assert out.returncode != 0 and 'deployment.json: no artifact #999999' in out.stderr and 'Traceback' not in out.stderr, out.stderr
    # the admin CLI says what is wrong: no server at the address, an empty token file
    out = cli('deploy', 'status', '--url', f'http://127.0.0.1:{free_port()}', '--token', 'x', env=env)
    assert out.returncode == 1 and 'cannot reach the server' in out.stderr and 'Traceback' not in out.stderr, out.stderr
    out = cli('deploy', 'status', '--state-dir', tmp_path/'a', env=env)
    assert out.returncode == 2 and 'admin.token is empty' in out.stderr and 'Traceback' not in out.stderr, out.stderr
    # an oversized body is refused from its Content-Length and the connection closed: the rest is never read
    with _server(st, tmp_path/'d') as srv:
        head, rest = oversized_post(srv.port)
        assert head.startswith(b'HTTP/1.1 413') and b'connection: close' in head.lower() and b'over the limit' in rest


def oversized_post(port: int, size: int = 2 << 20) -> tuple[bytes, bytes]:
    "Announce a body of `size` bytes, send 1 KB of it, and read what the server answers until it closes the connection."
    with socket.create_connection(('127.0.0.1', port), timeout=30) as s:
        s.sendall(b'POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                  + f'Content-Length: {size}\r\n\r\n'.encode() + b'x' * 1024)
        data = b''
        while chunk := s.recv(65536): data += chunk
    head, _, rest = data.partition(b'\r\n\r\n')
    return head, rest
