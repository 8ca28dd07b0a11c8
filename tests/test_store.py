"""The MLMD facade against real stores: an SQLite file under concurrent writers, and a PostgreSQL server."""
import os, subprocess, sys, textwrap
from pathlib import Path

import pytest

from conftest import cli
from mlops_nb.core.store import Store

WRITER = textwrap.dedent('''
    import sys
    from mlops_nb.core.store import Store
    uri, me, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    st = Store(uri)
    st.put_run(f"run-{me}")
    shared = None
    for i in range(n):
        x = st.start_execution('data', f"run-{me}", parameters={'i': i})
        st.record_output(x.id, 'Examples', f"/data/{me}/{i}", f"{me}-{i}", run_id=f"run-{me}")
        # every writer also registers the same shared content: one artifact in the end
        shared = st.record_output(x.id, 'Schema', f"/schema/{me}", "shared-schema", run_id=f"run-{me}")
        st.finish_execution(x.id)
    print(shared.id)
''')


def _lineage_scenario(st: Store):
    st.put_run('p')
    a = st.start_execution('data', 'p', parameters={'source': 'digits'})
    ex = st.record_output(a.id, 'Examples', '/d/ex', 'h-ex', run_id='p', version='v1')
    st.finish_execution(a.id)
    b = st.start_execution('modeling', 'p', parameters={'epochs': 2})
    st.record_input(b.id, ex)
    m = st.record_output(b.id, 'Model', '/d/m', 'h-m', run_id='p')
    st.finish_execution(b.id, 'FAILED', error='NaN loss')
    up = st.upstream(m.id)
    assert {str(n) for n in up.artifacts()} == {str(ex), str(m)}
    assert [x.state for x in sorted(up.executions(), key=lambda x: x.id)] == ['COMPLETE', 'FAILED']
    assert st.latest_artifact('Examples', run_id='p', version='v1').id == ex.id
    assert st.record_output(b.id, 'Model', '/elsewhere', 'h-m', run_id='p').id == m.id
    assert [r.name for r in st.list_runs()] == ['p']
    assert st.executions('p', 'modeling')[0].get('error') == 'NaN loss'


def test_sqlite_file_store(tmp_path):
    _lineage_scenario(Store(f"sqlite:///{tmp_path/'m.db'}"))
    reopened = Store(str(tmp_path/'m.db'))  # a plain path works too, and the data is still there
    assert len(reopened.artifacts()) == 2


def test_four_concurrent_writers_lose_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path/'shared.db'}"
    n, writers = 60, 4
    procs = [subprocess.Popen([sys.executable, '-c', WRITER, uri, str(w), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(writers)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    st = Store(uri)
    assert len(st.list_runs()) == writers
    assert len(st.executions()) == writers * n
    assert all(x.state == 'COMPLETE' for x in st.executions())
    assert len(st.artifacts('Examples')) == writers * n
    assert len(st.artifacts('Schema')) == 1  # the shared content: found, not duplicated, under contention
    assert len({o.strip() for o, _ in outs}) == 1


@pytest.mark.slow
def test_two_pipeline_runs_in_parallel(runs):
    env = os.environ.copy()
    procs = [subprocess.Popen([str(Path(sys.executable).parent/'mlops_nb'), 'run', '--phases', 'scoping', '--run-id', f"par{i}", '--no-progress'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
    st = Store()
    assert sorted(r.name for r in st.list_runs()) == ['par0', 'par1']
    assert [x.state for x in st.executions()] == ['COMPLETE', 'COMPLETE']
    assert len(st.artifacts('ScopingCard')) == 1  # same parameters, same content


@pytest.mark.postgres
def test_postgresql_store(postgres_url):
    _lineage_scenario(Store(postgres_url))
    assert len(Store(postgres_url).artifacts()) == 2  # a second connection sees the same records


@pytest.mark.postgres
def test_pipeline_run_on_postgresql(postgres_url, runs):
    out = cli('run', '--phases', 'scoping', '--run-id', 'pg1', '--store', postgres_url, '--no-progress')
    assert out.returncode == 0, out.stderr
    lin = cli('lineage', 'ScopingCard@pg1', '--store', postgres_url)
    assert lin.returncode == 0 and 'scoping execution' in lin.stdout
    resumed = cli('run', '--resume', 'pg1', '--no-progress')  # the run remembers its store
    assert resumed.returncode == 0 and 'REUSED' in resumed.stdout
