"""Preprocessing bugs are caught at the step where they happen, and the error names that step (not the model)."""
import pytest

from pathlib import Path

from conftest import ROOT, cli


def test_the_scale_is_measured_not_assumed(runs, tmp_path):
    "The same digits exported on 0–255 are data on 0–255, not an error: the contract measures the scale, and the same rules keep the same images."
    from mlops_nb.data.ingest import PIXELS, load_digits_dataset
    frame = load_digits_dataset().frame.head(600)
    for name, f in (('d16', frame), ('d255', frame.assign(**{p: frame[p] * 255 // 16 for p in PIXELS}))):
        f[PIXELS + ['label']].to_csv(tmp_path/f'{name}.csv', index=False)
        out = cli('run', '--phases', 'data', '--run-id', name, '-p', 'source=csv', '-p', f'path={tmp_path/name}.csv', '-p', 'data_kind=unstructured',
                  '-p', f"rules_file={ROOT/'data'/'rules'/'digits.yaml'}", '--no-progress')
        assert out.returncode == 0, out.stderr[-3000:]
    from conftest import store_of
    from mlops_nb.data.contract import read_contract
    st = store_of(runs)
    scales = {r: read_contract(st.latest_artifact('DataContract', run_id=r).uri).scale for r in ('d16', 'd255')}
    assert scales == {'d16': 16.0, 'd255': 255.0}
    import pandas as pd
    kept = {r: len(pd.read_parquet(Path(st.latest_artifact('Examples', run_id=r, role='dataset').uri)/'examples.parquet')) for r in ('d16', 'd255')}
    assert kept['d16'] == kept['d255'] > 550, kept     # thresholds are shares of the scale: the same verdicts


def test_images_flattened_in_the_wrong_order_are_caught_before_training(runs, monkeypatch):
    import mlops_nb.modeling.phase as modeling
    from mlops_nb.core.checks import PipelineCheckError
    from mlops_nb.data.ingest import PIXELS, load_digits_dataset
    from mlops_nb.core.store import Store
    from mlops_nb.core.tracking import start_step
    from mlops_nb.modeling.train import TrainConfig, to_images
    frame = load_digits_dataset().frame.assign(split='train')
    frame.loc[frame.index[-300:], 'split'] = 'test'
    # the bug: a preprocessing change that lays the 8x8 grid out columns first
    buggy = lambda f, features=PIXELS: to_images(f, features).transpose(0, 2, 1, 3)
    monkeypatch.setattr(modeling, 'to_images', buggy)
    X, y = modeling.training_table(frame, None, 'train')
    step = start_step('modeling', dict(run_id='bug', store_uri=f"sqlite:///{runs/'mlmd.sqlite'}"))
    with pytest.raises(PipelineCheckError, match=r"step modeling\.train: the images' mean does not match the training layout .* flattened in the wrong order"):
        modeling.run_experiment(step, 'buggy', TrainConfig(epochs=1), (X, y), (X[:50], y[:50]), frame[frame.split == 'test'], [])
    # nothing was trained or registered for it
    assert Store(f"sqlite:///{runs/'mlmd.sqlite'}").artifacts('Model', 'bug') == []
