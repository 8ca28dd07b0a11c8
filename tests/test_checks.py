"""Preprocessing bugs are caught at the step where they happen, and the error names that step (not the model)."""
import pytest

from conftest import cli


def test_pixels_scaled_0_255_are_caught_at_ingestion(runs, tmp_path):
    from mlops_nb.data.ingest import PIXELS, load_digits_dataset
    frame = load_digits_dataset().frame
    bad = frame.assign(**{p: frame[p] * 255 // 16 for p in PIXELS})   # an upstream export on the 0-255 scale
    csv = tmp_path/'digits_255.csv'
    bad[PIXELS + ['label']].to_csv(csv, index=False)
    out = cli('run', '--phases', 'data', '--run-id', 'bug', '-p', 'source=csv', '-p', f'path={csv}', '-p', 'data_kind=unstructured',
              '--no-progress')
    assert out.returncode == 1
    assert 'step data.ingest: values span [0, 255], expected [0, 16] (pixels on 0–255 instead of 0–16?)' in out.stderr, out.stderr[-2000:]


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
