"""Bring your own data: every embedded source through the pipeline at its own shape, scale and classes, read from the
data contract in the store; and bad sources refused with a message naming the file, column or size."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import DEPLOY_PARAMS, cli, store_of
from mlops_nb.data.contract import read_contract

SMALL_MONITORING = ('-p', 'window_requests=300', '-p', 'clean_windows=2', '-p', 'change_windows=2', '-p', 'calibration_windows=3')


def _ok(out):
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])


def _serve(st, tmp_path, model_id):
    from mlops_nb.serving.process import ServerProcess
    return ServerProcess(tmp_path/'serving', store_uri=st.uri, model=str(model_id), guard_interval=0).start()


def _monitored(st, run):
    "What the monitoring phase of a run saw: its reports, and whether each change was detected at some window."
    reports = st.artifacts('MonitoringReport', run)
    return reports, {r['change'] for r in reports if r['detected'] and r['strength'] > 0}


def test_mnist_runs_at_its_own_resolution(runs, tmp_path):
    "28×28 digits on 0–255 through all five phases: the contract measures them, the model reads and serves them at that size."
    _ok(cli('run', '--run-id', 'mn', '-p', 'source=mnist', '-p', 'max_examples=1000', '-p', 'iterations=false', '-p', 'epochs=6', '-p', 'target_error_rate=0.2',
            *DEPLOY_PARAMS, *SMALL_MONITORING, '-p', 'changes=rescale', '--no-progress', timeout=1200))
    st = store_of(runs)
    contract = read_contract(st.latest_artifact('DataContract', run_id='mn').uri)
    assert (contract.kind, contract.shape, contract.scale, contract.ink, contract.n_values) == ('unstructured', (28, 28, 1), 255.0, 'high', 784)
    assert contract.classes == tuple(range(10))
    model = st.latest_artifact('Model', run_id='mn')
    from mlops_nb.modeling.export import LiteModel
    lite = LiteModel(Path(model.uri)/'model.tflite')
    assert (lite.input_shape, lite.n_classes) == ((28, 28, 1), 10)
    assert read_contract(model.uri) == contract                     # the model carries the contract it was trained under
    assert 'DataContract' in {a.type for a in st.upstream(model.id).artifacts()}
    from mlops_nb.data.validation import load_schema, schema_summary
    schema = load_schema(Path(st.latest_artifact('Schema', run_id='mn').uri)/'schema.pbtxt')
    domains = schema_summary(schema).set_index('feature')['domain']
    assert len(domains) == 785 and domains['pixel_400'] == 'int in [0, 255]', domains['pixel_400']
    ev = json.loads((Path(st.latest_artifact('ModelEvaluation', run_id='mn', experiment='final').uri)/'metrics.json').read_text())
    assert ev['n'] >= 130 and ev['accuracy'] > 0.5                     # ten classes: chance is 0.1
    card = json.loads((Path(st.latest_artifact('ScopingCard', run_id='mn').uri)/'card.json').read_text())
    assert 'LeNet-5' in {b['name']: b['source'] for b in card['baselines']}['literature']   # scoped as MNIST, not as the 8×8 digits
    assert (runs/'mn'/'data'/'figures'/'augmentation.png').is_file()
    reports, seen = _monitored(st, 'mn')
    assert len(reports) == 4 and 'rescale' in seen            # the 0–1 client bug is seen at 28×28 on 0–255 too
    # a served prediction in MNIST's own form: a 28×28 array of 0–255 values, answered with the data's label
    pushed = st.latest_artifact('PushedModel', run_id='mn')
    from mlops_nb.serving.phase import serving_sample
    X, y = serving_sample(st, 'mn')
    server = _serve(st, tmp_path, pushed['model_id'])
    try:
        import httpx
        r = httpx.post(server.url + '/v1/models/mnist:predict', json={'instances': [X[0].reshape(28, 28).tolist()]}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()['predictions'][0]['label'] in contract.classes
        small = httpx.post(server.url + '/v1/models/mnist:predict', json={'instances': [[0] * 64]}, timeout=30)   # an 8×8 digit
        assert small.status_code == 400 and 'instance 0: expected 784 values (or a 28×28 array)' in small.text, small.text
    finally: server.stop()
    # the course page that sets resolutions side by side reads this run from the store, and says what is not there
    from mlops_nb.site.compare import PHASES, complete_runs, run_summary
    assert complete_runs(st, 'mnist') == ['mn'] and complete_runs(st, 'digits') == []
    s = run_summary(st, 'mn')
    assert (s['shape'], s['values'], s['accuracy'], s['test_n']) == ((28, 28, 1), 784, ev['accuracy'], ev['n'])
    assert s['requests'] == st.latest_artifact('PredictionLog', run_id='mn')['requests'] and s['latency_p99_ms'] >= s['latency_p50_ms'] > 0
    assert s['changes'] == ['rescale'] and 'rescale' in s['detected'] and set(s['phase_seconds']) == set(PHASES)
    import papermill as pm
    page = pm.execute_notebook(str(Path(__file__).resolve().parent.parent/'nbs'/'resolutions.ipynb'), str(tmp_path/'page.ipynb'),
                               kernel_name='python3', progress_bar=False, cwd=str(tmp_path))
    text = json.dumps(page.cells)
    assert 'mnist (mn)' in text and 'no complete run of `digits`' in text and 'Only one run is in the store' in text


def test_a_table_runs_with_named_features_and_no_invented_baselines(runs, tmp_path):
    "breast_cancer through all five phases: 30 named features, named classes, no simulated labelers, no HLP, no augmentation, an MLP."
    # the workspace already has a digits champion: the table gets a champion of its own, and the digits' one stays
    from mlops_nb.data.contract import contract_of, save_contract
    from mlops_nb.data.ingest import load_digits_dataset
    from mlops_nb.modeling.phase import model_scope
    runs.mkdir(parents=True)
    st = store_of(runs); st.put_run('earlier')
    (tmp_path/'digits-model').mkdir(); save_contract(contract_of(load_digits_dataset()), tmp_path/'digits-model')
    x = st.start_execution('modeling.train', 'earlier')
    digits_model = st.record_output(x.id, 'Model', str(tmp_path/'digits-model'), 'd' * 16, run_id='earlier'); st.finish_execution(x.id)
    st.set_alias('champion', digits_model, 'earlier', scope=model_scope(digits_model))
    _ok(cli('run', '--run-id', 'bc', '-p', 'source=breast_cancer', *DEPLOY_PARAMS, *SMALL_MONITORING, '-p', 'changes=shift,units',
            '-p', 'model_name=tumours', '--no-progress', timeout=1200))
    st = store_of(runs)
    assert json.loads((Path(st.latest_artifact('PushedModel', run_id='bc').uri)/'deployment.json').read_text())['name'] == 'tumours'   # named by the parameter
    assert st.alias('champion', 'digits').id == digits_model.id
    assert st.alias('champion', 'breast_cancer').get('run_id') == 'bc'
    assert read_contract(st.alias('champion', 'breast_cancer').uri).name == 'breast_cancer'
    assert st.latest_artifact('PushedModel', run_id='bc')['model_id'] != digits_model.id
    contract = read_contract(st.latest_artifact('DataContract', run_id='bc').uri)
    assert contract.kind == 'structured' and len(contract.features) == 30 and contract.feature_names[0] == 'mean radius'
    assert (contract.classes, contract.class_names) == ((0, 1), ('malignant', 'benign'))
    assert contract.normalisation['method'] == 'standardise' and set(contract.normalisation['mean']) == set(contract.feature_names)
    labels = st.latest_artifact('Labels', run_id='bc')
    assert labels['origin'] == 'delivered' and not labels['simulated']
    assert st.latest_artifact('Baseline', run_id='bc', name='human-level') is None          # HLP does not apply, and is not made up
    assert st.latest_artifact('Examples', run_id='bc', role='augmented') is None
    model = st.latest_artifact('Model', run_id='bc')
    from mlops_nb.modeling.export import LiteModel
    assert LiteModel(Path(model.uri)/'model.tflite').input_shape == (30,)
    assert {x.parameters['arch'] for x in st.executions('bc', 'modeling.train')} == {'mlp'}   # a table gets the MLP
    ev = json.loads((Path(st.latest_artifact('ModelEvaluation', run_id='bc', experiment='final').uri)/'metrics.json').read_text())
    assert ev['accuracy'] > 0.8                                                           # chance is 0.63
    nb = (runs/'bc'/'02_data.ipynb').read_text()
    assert 'human-level performance does not apply to a table' in nb
    reports, seen = _monitored(st, 'bc')
    assert len(reports) == 2 * 4 and {r['change'] for r in reports} == {'shift', 'units'}   # a table's own changes
    assert seen == {'shift', 'units'}          # one feature ×1000 is far beyond its own noise floor, though 29 are not
    assert not any(r['detected'] for r in reports if r['strength'] == 0)   # 57 serving rows: clean windows stay under the measured floor
    # a served prediction in the table's own form: a row as an object of named features; a wrong name is refused, named
    import httpx
    server = _serve(st, tmp_path, st.latest_artifact('PushedModel', run_id='bc')['model_id'])
    try:
        row = dict(zip(contract.feature_names, pd.read_parquet(Path(st.latest_artifact('Examples', run_id='bc').uri)/'examples.parquet')[contract.feature_names].iloc[0].tolist()))
        r = httpx.post(server.url + '/v1/models/breast_cancer:predict', json={'instances': [row]}, timeout=30)
        assert r.status_code == 200 and r.json()['predictions'][0]['label'] in (0, 1), r.text
        bad = dict(row); bad['mean radiuss'] = bad.pop('mean radius')
        r = httpx.post(server.url + '/v1/models/breast_cancer:predict', json={'instances': [bad]}, timeout=30)
        assert r.status_code == 400 and "'mean radius'" in r.text, r.text
    finally: server.stop()
    refused = cli('run', '--run-id', 'bc2', '--phases', 'data', '-p', 'source=breast_cancer', '-p', 'augment_copies=1', '--no-progress')
    assert refused.returncode == 1 and 'augmentation applies to unstructured data' in refused.stderr


def test_a_table_with_words_runs_and_keeps_its_labels(runs, tmp_path):
    "A user's CSV with a categorical column and word labels through all five phases: the contract keeps the vocabulary and the words, the server answers them."
    rng = np.random.default_rng(0)
    n = 300
    size = rng.normal(10, 2, n)
    colour = rng.choice(['red', 'green', 'blue'], n)
    label = np.where(size + (colour == 'red') * 3 > 11, 'large', 'small')
    pd.DataFrame(dict(size=size.round(3), colour=colour, kind=label)).to_csv(tmp_path/'things.csv', index=False)
    _ok(cli('run', '--run-id', 'w', '-p', 'source=csv', '-p', f'path={tmp_path/"things.csv"}', '-p', 'label_column=kind', '-p', 'epochs=30',
            *DEPLOY_PARAMS, *SMALL_MONITORING, '-p', 'changes=missing', '--no-progress', timeout=1200))
    st = store_of(runs)
    contract = read_contract(st.latest_artifact('Model', run_id='w').uri)
    assert contract.classes == ('large', 'small') and contract.source.endswith('things.csv')
    colour_f = {f.name: f for f in contract.features}['colour']
    assert (colour_f.type, colour_f.vocabulary) == ('categorical', ('blue', 'green', 'red'))
    reports, seen = _monitored(st, 'w')
    assert {r['change'] for r in reports} == {'missing'} and seen == {'missing'}   # inputs that lose a feature's value are seen
    # served in the table's own form, a word among the numbers; a colour training never had is refused, named
    import httpx
    server = _serve(st, tmp_path, st.latest_artifact('PushedModel', run_id='w')['model_id'])
    try:
        r = httpx.post(server.url + '/v1/models/things:predict', json={'instances': [{'size': 12.5, 'colour': 'red'}]}, timeout=30)
        assert r.status_code == 200 and r.json()['predictions'][0]['label'] in ('large', 'small'), r.text
        r = httpx.post(server.url + '/v1/models/things:predict', json={'instances': [{'size': 12.5, 'colour': 'purple'}]}, timeout=30)
        assert r.status_code == 400 and "feature 'colour': 'purple'" in r.text, r.text
    finally: server.stop()


def test_a_folder_of_colour_images_runs_at_its_own_size_and_channels(runs, tmp_path):
    "A user's class folders of 12×10 RGB images with word labels through all five phases: trained, exported, deployed, monitored and served as H×W×3 arrays."
    rng = np.random.default_rng(0)
    root = tmp_path/'swatches'
    hues = {'amber': (230, 160, 20), 'teal': (20, 150, 150), 'violet': (140, 40, 200)}
    for name, rgb in hues.items():
        (root/name).mkdir(parents=True)
        for i in range(40):
            img = np.clip(rng.normal(rgb, 25, (12, 10, 3)), 0, 255).astype(np.uint8)
            img[rng.integers(0, 12), :] = 255                                   # a bright stroke somewhere
            Image.fromarray(img, 'RGB').save(root/name/f"{i}.png" if i % 2 else root/name/f"{i}.jpg", quality=95)
    _ok(cli('run', '--run-id', 'rgb', '-p', 'source=images', '-p', f'path={root}', '-p', 'epochs=15', '-p', 'iterations=false',
            '-p', 'target_error_rate=0.3', *DEPLOY_PARAMS, *SMALL_MONITORING, '-p', 'changes=rotation', '--no-progress', timeout=1200))
    st = store_of(runs)
    [mon] = st.executions('rgb', 'monitoring')
    assert mon.state == 'COMPLETE' and mon['judged_features'] == 12 * 10 * 3 and mon['windows'] == 4   # every value of a colour image is judged
    model = st.latest_artifact('Model', run_id='rgb')
    contract = read_contract(model.uri)
    assert contract.shape == (12, 10, 3) and contract.classes == ('amber', 'teal', 'violet') and contract.scale == 255
    ev = json.loads((Path(st.latest_artifact('ModelEvaluation', run_id='rgb', experiment='final').uri)/'metrics.json').read_text())
    assert ev['accuracy'] > 0.6, ev                                         # three plain hues: chance is 1/3
    import httpx
    server = _serve(st, tmp_path, model.id)
    try:
        name = httpx.get(server.url + '/v1/models').json()['models'][0]['name']
        assert name == 'swatches'                                           # named after the user's folder
        img = np.asarray(Image.open(root/'teal'/'1.png'), np.float32)
        r = httpx.post(server.url + f'/v1/models/{name}:predict', json={'instances': [img.tolist()]}, timeout=30)
        assert r.status_code == 200 and r.json()['predictions'][0]['label'] in hues, r.text
        r = httpx.post(server.url + f'/v1/models/{name}:predict', json={'instances': [img[..., 0].tolist()]}, timeout=30)
        assert r.status_code == 400 and '12×10×3' in r.text, r.text              # a grey image to the colour model: its shape named
    finally: server.stop()


def test_bad_sources_are_refused_naming_the_file_column_or_size(runs, tmp_path):
    root = tmp_path/'imgs'
    for c, size in (('a', (20, 20)), ('b', (20, 20)), ('b', (24, 20))):
        (root/c).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full(size, 255, np.uint8)).save(root/c/f"{size[0]}.png")
    out = cli('run', '--run-id', 'mix', '--phases', 'data', '-p', 'source=images', '-p', f'path={root}', '--no-progress')
    assert out.returncode == 1
    assert 'the images have different sizes: a/20.png is 20×20 and b/24.png is 24×20' in out.stderr and 'resize=20x20' in out.stderr
    (root/'b'/'x.png').write_bytes(b'not a png')
    out = cli('run', '--run-id', 'bad', '--phases', 'data', '-p', 'source=images', '-p', f'path={root}', '-p', 'resize=20x20', '--no-progress')
    assert out.returncode == 1 and 'b/x.png: unreadable or corrupt image' in out.stderr
    pd.DataFrame(dict(a=[1, 2, 3], b=[None] * 3, label=[0, 1, 0])).to_csv(tmp_path/'gap.csv', index=False)
    out = cli('run', '--run-id', 'gap', '--phases', 'data', '-p', 'source=csv', '-p', f'path={tmp_path/"gap.csv"}', '--no-progress')
    assert out.returncode == 1 and "gap.csv: column 'b' is entirely missing (all 3 values are empty)" in out.stderr
    st = store_of(runs)
    assert not st.artifacts('Examples') and not st.artifacts('DataContract')                 # nothing half-made is registered
