"""The modeling phase in the pipeline: blessing on the first run, a regression refused, experiments, exports that agree."""
import json
from pathlib import Path

import pytest

from conftest import cli, store_of


@pytest.fixture(scope='module')
def pipeline(modeled):
    """One pipeline run (scoping, data, modeling), then a weak model trained on the same data in a second run that names
    the first as where its inputs come from, and deploys (nothing: its model is not blessed)."""
    runs, env, first = modeled
    weak = cli('run', '--run-id', 'weak', '--phases', 'modeling,deployment', '-p', 'inputs_run=full', '-p', 'arch=mlp', '-p', 'epochs=1',
               '-p', 'iterations=false', '--no-progress', env=env)
    return runs, env, first, weak


def _decision(st, run_id: str):
    "The ModelBlessing artifact of a run and its decision.json."
    b = st.latest_artifact('ModelBlessing', run_id=run_id)
    return b, json.loads((Path(b.uri)/'decision.json').read_text())



def test_first_run_blesses_with_the_change_threshold_skipped(pipeline):
    runs, env, first, _ = pipeline
    assert first.returncode == 0, first.stderr[-3000:]
    st = store_of(runs)
    b, decision = _decision(st, 'full')
    assert decision['blessed'] and b['blessed'] == 1
    assert any(r.startswith('SKIPPED no regression') and 'first run' in r for r in decision['reasons'])
    champion = st.alias('champion')
    assert champion is not None and champion.id == b['model_id']
    # the model's lineage reaches the data version, the rules, the labels and the scoping card
    txt = cli('lineage', str(champion.id), '--store', st.uri, env=env).stdout
    for piece in ('Examples#', 'DataRules#', 'Labels#', 'Schema#', 'DataContract#', 'File#', 'modeling.train execution', 'git '):
        assert piece in txt, piece
    # and the model's folder carries the data contract it was trained under
    from mlops_nb.data.contract import read_contract, load_contract
    assert read_contract(champion.uri) == load_contract(st, 'full')[0]
    # and the blessing reaches the scoping card whose targets it applied
    assert 'ScopingCard#' in cli('lineage', str(b.id), '--store', st.uri, env=env).stdout
    for fig in ('baselines', 'data_centric_iterations', 'evaluation', 'worst_predictions'):
        assert (runs/'full'/'modeling'/'figures'/f'{fig}.png').is_file(), fig


def test_a_regressing_model_is_not_blessed_and_aliases_stay(pipeline):
    runs, env, first, weak = pipeline
    assert weak.returncode == 0, weak.stderr[-3000:]
    st = store_of(runs)
    b, decision = _decision(st, 'weak')
    assert not decision['blessed'] and b['blessed'] == 0
    assert any(r.startswith('FAILED') for r in decision['reasons'])
    change = next(c for c in decision['checks'] if c['kind'] == 'change')
    assert change.get('skipped') is None and change['threshold'] is not None  # compared with the champion this time
    assert st.alias('champion').id == st.latest_artifact('ModelBlessing', run_id='full')['model_id']
    assert all(x.get('run_id') != 'weak' for x, _ in st.alias_history('challenger'))  # the weak run set no alias


def test_a_refused_model_is_named_in_the_summary_and_deployment_deploys_nothing_new(pipeline):
    runs, env, first, weak = pipeline
    assert weak.returncode == 0, weak.stderr[-3000:]
    st = store_of(runs)
    b, _ = _decision(st, 'weak')
    summary = json.loads((runs/'weak'/'summary.json').read_text())
    modeling, deployment = summary['phases']
    assert modeling['status'] == 'COMPLETE' and modeling['outcome'].startswith(f"model #{b['model_id']} NOT BLESSED")
    assert f"model #{b['model_id']} NOT BLESSED" in weak.stdout
    # the run said where its inputs came from: the card and the data of run 'full', named by inputs_run
    assert 'from run full' in modeling['inputs_from'] and 'Examples#' in modeling['inputs_from'] and 'inputs from other runs' in weak.stdout
    champion = st.alias('champion')
    assert deployment['status'] == 'COMPLETE' and 'nothing new is deployed' in deployment['outcome']
    assert f"champion #{champion.id} keeps serving" in deployment['outcome']
    # the server recorded that it started with the champion, and no strategy was ever started for another model
    assert [(a.get('action'), a.get('stable_model')) for a in st.artifacts('DeploymentDecision', run_id='weak')] == [('start', champion.id)]
    pushed = st.latest_artifact('PushedModel', run_id='weak')
    assert pushed['model_id'] == champion.id  # the champion kept serving; no other model was picked up quietly


def test_a_phase_never_reads_another_run_unless_a_parameter_names_it(pipeline, tmp_path):
    runs, env, *_ = pipeline
    out = cli('run', '--run-id', 'lonely', '--phases', 'modeling', '-p', 'iterations=false', '-p', 'epochs=1', '--no-progress', env=env)
    assert out.returncode == 1
    assert "Run 'lonely' has no usable Examples" in out.stderr and '-p inputs_run=' in out.stderr
    assert store_of(runs).artifacts('Model', run_id='lonely') == []


def test_experiments_command_lists_filters_sorts_and_compares(pipeline):
    runs, env, *_ = pipeline
    out = cli('experiments', '--sort', 'accuracy', env=env)
    assert out.returncode == 0
    lines = [l for l in out.stdout.splitlines()[2:] if l.strip()]
    assert len(lines) >= 6  # four iterations and a final model in the full run, one in the weak run (other tests may add more)
    accs = [float(l.split()[-4]) for l in lines]
    assert accs == sorted(accs, reverse=True)
    mlp = cli('experiments', '--where', 'arch=mlp', env=env).stdout
    assert 'weak' in mlp and 'iter0' not in mlp
    ids = [int(l.split()[0]) for l in lines]
    cmp = cli('experiments', '--compare', str(min(ids)), str(max(ids)), env=env)
    assert cmp.returncode == 0 and 'parameters that differ' in cmp.stdout and 'accuracy' in cmp.stdout
    bad = cli('experiments', '--sort', 'acc', env=env)
    assert bad.returncode == 2 and "no such column" in bad.stderr


def test_data_centric_iterations_hold_the_model_fixed_and_the_page_judges_each_step_against_the_noise(pipeline):
    runs, *_ = pipeline
    import pandas as pd
    from mlops_nb.core.stats import describe_difference, paired_difference
    from mlops_nb.modeling.phase import experiments
    st = store_of(runs)
    t = experiments(st, 'full').set_index('experiment')
    its = ['iter0', 'iter1', 'iter2', 'iter3']
    for col in ('arch', 'epochs', 'learning_rate', 'seed'):
        assert t.loc[its, col].nunique() == 1, col  # the model held fixed: only the data changes
    assert t.loc[its, 'variant'].nunique() == 4
    # the page's verdict for each step is the paired comparison of the stored predictions, whatever the numbers are
    preds = {a['experiment']: pd.read_parquet(Path(a.uri)/'predictions.parquet')
             for a in st.artifacts('ModelEvaluation', run_id='full') if a.get('experiment') in its}
    page = (runs/'full'/'03_modeling.ipynb').read_text()
    for k in range(1, 4):
        a, b = preds[its[k - 1]], preds[its[k]]
        assert a.item_id.tolist() == b.item_id.tolist()  # the same test items
        d = paired_difference(a.predicted == a.label, b.predicted == b.label)
        assert describe_difference(d, 'test accuracy') in page.replace('\\n', '\n'), k


def test_every_training_records_what_decides_its_numbers(pipeline):
    runs, *_ = pipeline
    st = store_of(runs)
    exs = st.executions('full', 'modeling.train')
    assert len(exs) == 5
    for x in exs:
        assert x.parameters['deterministic'] is True and x.get('env_op_determinism') == 1
        for k in ('env_cpu', 'env_cpu_flags', 'env_tensorflow', 'env_keras', 'env_litert', 'env_numpy', 'env_intra_op_threads'):
            assert x.get(k) is not None, k


def test_exported_savedmodel_and_tflite_agree(pipeline):
    runs, *_ = pipeline
    from mlops_nb.data.phase import load_examples
    from mlops_nb.modeling.export import LiteModel, check_agreement, load_saved_model
    from mlops_nb.modeling.train import to_images
    st = store_of(runs)
    model = Path(st.alias('champion').uri)
    frame, _ = load_examples(st, 'full')
    X = to_images(frame[frame.split == 'test'])
    assert check_agreement(load_saved_model(model/'saved_model'), LiteModel(model/'model.tflite'), X) < 1e-5


def test_bad_hyperparameters_are_refused_before_training(runs):
    for args, msg in ((('-p', 'learning_rate=50'), "'learning_rate' (-p) = 50.0 is out of range"),
                      (('-p', 'arch=rnn'), "'arch' (-p) = 'rnn' is not one of: cnn, mlp"),
                      (('-p', 'epochs=many'), "'epochs' (-p) expects int"),
                      (('-p', 'seed=-1'), "'seed' (-p) = -1 is out of range [0, 2147483647]"),
                      (('-p', 'seed=0x10'), "'seed' (-p) expects int, got '0x10'"),
                      (('-p', 'seed=1.5'), "'seed' (-p) expects int, got '1.5'"),
                      (('-p', 'deterministic=maybe'), "'deterministic' (-p) expects bool")):
        out = cli('run', '--phases', 'modeling', *args)
        assert out.returncode == 2 and msg in out.stderr, (args, out.stderr)


def test_a_model_file_that_does_not_load_is_named(tmp_path):
    from mlops_nb.modeling.export import LiteModel, ModelLoadError, load_saved_model
    (tmp_path/'m.tflite').write_bytes(b'\x00' * 64)
    with pytest.raises(ModelLoadError, match=r"m\.tflite: not a loadable TFLite model"): LiteModel(tmp_path/'m.tflite')
    (tmp_path/'sm').mkdir(); (tmp_path/'sm'/'saved_model.pb').write_bytes(b'garbage')
    with pytest.raises(ModelLoadError, match=r"sm: SavedModel does not load"): load_saved_model(tmp_path/'sm')


def test_a_diverging_run_stops_with_the_reason():
    from mlops_nb.data.ingest import assign_splits, load_digits_dataset
    from mlops_nb.modeling.train import TrainConfig, TrainingDiverged, to_images, train
    f = assign_splits(load_digits_dataset().frame, 0.15, 0.15, 0.1, seed=0)
    tr, ev = f[f.split == 'train'], f[f.split == 'eval']
    with pytest.raises(TrainingDiverged, match=r'training diverged: the loss became (nan|inf|-inf) in epoch \d+'):
        train(TrainConfig(epochs=2, arch='mlp'), to_images(tr) * 1e20, tr.label.to_numpy(), to_images(ev), ev.label.to_numpy(), progress=False)


def test_training_on_a_named_data_version(pipeline):
    runs, env, *_ = pipeline
    st = store_of(runs)
    first = st.artifacts('Examples', role='dataset')[0]  # version 1, before the second batch
    out = cli('run', '--phases', 'modeling', '--run-id', 'v1', '-p', f"data_version={first['version'][:8]}", '-p', 'iterations=false',
              '-p', 'epochs=2', '--no-progress', env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    from mlops_nb.modeling.phase import experiments
    assert experiments(st, 'v1').data_version.tolist() == [first['version']]
    bad = cli('run', '--phases', 'modeling', '-p', 'data_version=nope', '--no-progress', env=env)
    assert bad.returncode == 1 and "No dataset Examples version 'nope'" in bad.stderr
