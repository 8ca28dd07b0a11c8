"""The data phase: bad input named precisely, the gate, versions, the Beam path, and the phase inside `mlops_nb run`."""
import json, re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import cli
from mlops_nb.data.ingest import PIXELS, DataError, load_digits_dataset, load_image_folder, load_source, load_table
from mlops_nb.data.rules import apply_rules, load_rules


def _digits_csv(path: Path, n: int = 400, changes: dict | None = None) -> Path:
    f = load_digits_dataset().frame.head(n).drop(columns='item_id')
    for (row, col), v in (changes or {}).items(): f.loc[row, col] = v
    f.to_csv(path, index=False)
    return path


def test_table_errors_name_file_row_and_column(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"): load_table(tmp_path/'nope.csv')
    p = _digits_csv(tmp_path/'d.csv')
    with pytest.raises(DataError, match=r"no label column 'digit'; columns are: pixel_0"): load_table(p, 'digit')
    with pytest.raises(DataError, match=r"missing columns \['pixel_99'\]"): load_table(p, features=['pixel_1', 'pixel_99'])
    bad = tmp_path/'bad.csv'
    text = p.read_text().splitlines(); cells = text[6].split(','); cells[10] = 'ten'; text[6] = ','.join(cells)
    bad.write_text('\n'.join(text))
    with pytest.raises(DataError, match=r"bad\.csv: row 5 \(line 7\), column 'pixel_10': 'ten' is not a number"): load_table(bad)
    (tmp_path/'empty.csv').write_bytes(b'\x00\x01garbage')
    with pytest.raises(DataError, match='empty.csv'): load_table(tmp_path/'empty.csv')


def test_tables_that_would_fail_late_are_refused_at_ingestion_naming_file_line_and_column(tmp_path):
    p = _digits_csv(tmp_path/'d.csv', n=20)
    lines = p.read_text().splitlines()
    def variant(name: str, edit) -> Path:
        text = list(lines); edit(text)
        (tmp_path/name).write_text('\n'.join(text) + '\n')
        return tmp_path/name
    def cell(text, line, col, value):  # line: 1-based as in an editor, the header is line 1
        cells = text[line - 1].split(','); cells[col] = value; text[line - 1] = ','.join(cells)
    with pytest.raises(DataError, match=r"head\.csv: the file has a header but no rows \(columns: pixel_0, pixel_1,"):
        load_table(variant('head.csv', lambda t: t.__delitem__(slice(1, None))))
    with pytest.raises(DataError, match=r"inf\.csv: row 6 \(line 8\), column 'pixel_3': inf is not a finite number"):
        load_table(variant('inf.csv', lambda t: cell(t, 8, 3, 'inf')))
    with pytest.raises(DataError, match=r"minf\.csv: row 0 \(line 2\), column 'pixel_63': -inf is not a finite number"):
        load_table(variant('minf.csv', lambda t: cell(t, 2, 63, '-inf')))
    with pytest.raises(DataError, match=r"nan\.csv: row 10 \(line 12\), column 'pixel_7': the value is missing"):
        load_table(variant('nan.csv', lambda t: cell(t, 12, 7, 'NaN')))
    with pytest.raises(DataError, match=r"short\.csv: line 5 has 60 fields, the header has 65: the values of 'pixel_60', 'pixel_61', 'pixel_62', 'pixel_63', 'label' are missing"):
        load_table(variant('short.csv', lambda t: t.__setitem__(4, ','.join(t[4].split(',')[:60]))))
    with pytest.raises(DataError, match=r"dup\.csv: line 1: column name 'pixel_2' appears 2 times in the header \(columns 3, 10 of 65\)"):
        load_table(variant('dup.csv', lambda t: cell(t, 1, 9, 'pixel_2')))


def test_an_ingest_failure_names_the_failing_line_of_the_cell_and_the_bad_value(runs, tmp_path):
    csv = _digits_csv(tmp_path/'inf.csv', n=300, changes={(40, 'pixel_5'): float('inf')})
    out = cli('run', '--phases', 'data', '-p', 'source=csv', '-p', f'path={csv}', '--run-id', 'inf', '--no-progress')
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"phase 'data' failed at cell \d+ \(In \[\d+\]\), line \d+: batch1 = sample_dataset\(load_source\(source, path,", out.stderr), out.stderr
    assert f"DataError: {csv}: row 40 (line 42), column 'pixel_5': inf is not a finite number" in out.stderr
    from mlops_nb.core.store import Store
    [x] = Store().executions('inf', 'data')
    assert x.state == 'FAILED' and 'line 42' in x['error']


def test_labels_outside_the_domain_are_named(tmp_path):
    ds = load_table(_digits_csv(tmp_path/'d.csv', n=50, changes={(7, 'label'): 11}))
    with pytest.raises(DataError, match=r"row 7 \(item d-000007\): label 11 is outside the label domain"):
        apply_rules(ds.frame, load_rules(), 'unstructured', classes=ds.classes)


def _image_folder(root: Path, per_class: int = 6, classes=range(10)) -> Path:
    d = load_digits_dataset().frame
    for c in classes:
        (root/str(c)).mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(d[d.label == c].head(per_class)[PIXELS].to_numpy()):
            img = 255 - np.kron(row.reshape(8, 8) * 15, np.ones((4, 4))).astype(np.uint8)  # dark ink on white, 32x32
            Image.fromarray(img).save(root/str(c)/f"{i}.png")
    return root


def test_image_folder_errors_name_file_and_class(tmp_path):
    root = _image_folder(tmp_path/'imgs', per_class=2, classes=(1, 2))
    ds = load_image_folder(root)
    assert (len(ds), ds.kind, ds.shape, ds.classes) == (4, 'unstructured', (32, 32, 1), (1, 2))   # native size, the folders' labels
    orig = load_digits_dataset().frame
    back = (255 - ds.frame[ds.features].to_numpy()[0].reshape(8, 4, 8, 4)).mean((1, 3)) / 15   # the values as the file holds them
    assert np.abs(back.ravel() - orig[orig.label == 1][PIXELS].to_numpy()[0]).max() < 1e-9      # round trip
    (root/'2'/'broken.jpg').write_bytes(b'\xff\xd8\xff garbage')
    with pytest.raises(DataError, match=r"2/broken\.jpg: unreadable or corrupt image"): load_image_folder(root)
    (root/'2'/'broken.jpg').unlink()
    (root/'3').mkdir()
    with pytest.raises(DataError, match=r"class '3' has no images"): load_image_folder(root)
    with pytest.raises(DataError, match='folder not found'): load_image_folder(tmp_path/'missing')
    with pytest.raises(DataError, match="unknown source 'sql'"): load_source('sql')


def test_augmenting_a_table_is_refused_with_the_reason():
    from mlops_nb.data.augment import augment
    with pytest.raises(DataError, match='augmentation applies to unstructured data .* this data is structured'):
        augment(load_digits_dataset().frame.head(5), 'structured', 1)


def test_beam_path_matches_in_memory_statistics(tmp_path):
    from mlops_nb.data.validation import statistics, statistics_from_csv
    frame = load_digits_dataset().frame.drop(columns='item_id')
    frame.to_csv(tmp_path/'d.csv', index=False)
    beam = statistics_from_csv(tmp_path/'d.csv', tmp_path/'stats.tfrecord', workers=2)
    mem = statistics(frame)
    assert beam.datasets[0].num_examples == mem.datasets[0].num_examples == len(frame)
    means = lambda s: {f.path.step[0]: round(f.num_stats.mean, 6) for f in s.datasets[0].features}
    assert means(beam) == means(mem)


def test_data_phase_in_the_pipeline_with_lineage(runs):
    out = cli('run', '--run-id', 'd1', '--phases', 'scoping,data', '--no-progress')
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((runs/'d1'/'summary.json').read_text())
    assert [p['name'] for p in summary['phases']][:2] == ['scoping', 'data']
    types = {a['type'] for a in summary['phases'][1]['artifacts']}
    assert {'DataRules', 'Examples', 'Labels', 'Baseline', 'ExampleStatistics', 'Schema', 'ExampleAnomalies', 'DataContract'} <= types
    from mlops_nb.data.phase import load_examples, load_labels
    from mlops_nb.core.store import Store
    st = Store()
    frame, art = load_examples(st, 'd1')
    assert set(frame.split) == {'train', 'eval', 'test', 'serving'} and not frame.item_id.str.startswith('scan-blank').any()
    aug, aug_art = load_examples(st, 'd1', role='augmented')
    txt = cli('lineage', str(aug_art.id)).stdout
    assert 'data.augment' in txt and 'DataRules#' in txt and f"Examples#{art.id}" in txt  # augmented ← examples ← rules
    assert st.latest_artifact('Baseline', run_id='d1', name='human-level') is not None
    assert len(load_labels(st, 'd1')[0]) > 1000
    # the data contract is measured from the data and derived from this run's examples
    from mlops_nb.data.contract import load_contract
    contract, c_art = load_contract(st, 'd1')
    assert (contract.kind, contract.shape, contract.scale, contract.ink, contract.classes) == ('unstructured', (8, 8, 1), 16.0, 'high', tuple(range(10)))
    assert c_art['version'] == contract.version and art.id in {a.id for a in st.upstream(c_art.id).artifacts()}
    for fig in ('label_agreement', 'discarded_batch2', 'augmentation', 'splits'):
        assert (runs/'d1'/'data'/'figures'/f'{fig}.png').is_file(), fig


def test_gate_blocks_then_accepts_and_versions_repeat(runs, tmp_path):
    csv = _digits_csv(tmp_path/'pix.csv', n=600, changes={(5, 'pixel_20'): 40})
    args = ['run', '--phases', 'data', '-p', 'source=csv', '-p', f'path={csv}', '-p', 'data_kind=unstructured', '--no-progress']
    blocked = cli(*args, '--run-id', 'g1')
    assert blocked.returncode == 1
    assert "phase 'data' failed" in blocked.stderr and 'pixel_20' in blocked.stderr and 'INT_TYPE_BIG_INT' in blocked.stderr
    assert 'expected int in [0, 16]' in blocked.stderr
    from mlops_nb.core.store import Store
    st = Store()
    [x] = st.executions('g1', 'data')
    assert x.state == 'FAILED' and 'pixel_20' in x['error']
    # the blocked data stays in the store, marked, and no default lookup returns it: not the run's, not the store's newest
    assert st.latest_artifact('Examples', run_id='g1') is None
    kept = st.latest_artifact('Examples', run_id='g1', blocked=True, role='dataset')
    assert kept['blocked'] == 1 and 'the validation gate blocked it: ExampleAnomalies#' in kept['blocked_reason']
    assert st.latest_artifact('DataContract', run_id='g1') is None and st.latest_artifact('DataContract', run_id='g1', blocked=True)['blocked'] == 1
    from mlops_nb.data.phase import load_examples
    with pytest.raises(LookupError, match='No usable dataset Examples'): load_examples(st)  # what `mlops_nb serve` checks models on
    with pytest.raises(LookupError, match=r"was blocked \(the validation gate blocked it"): load_examples(st, version=kept['version'])
    train = cli('run', '--phases', 'modeling', '-p', 'inputs_run=g1', '-p', 'iterations=false', '--no-progress')
    assert train.returncode == 1 and 'No usable Examples' in train.stderr and not st.artifacts('Model')
    ok = cli(*args, '-p', 'accept_anomalies=pixel_20:INT_TYPE_BIG_INT', '--run-id', 'g2')
    assert ok.returncode == 0, ok.stderr[-2000:]
    anom = st.latest_artifact('ExampleAnomalies', run_id='g2')
    assert anom['accepted'] == 'pixel_20:INT_TYPE_BIG_INT'
    assert pd.read_csv(Path(anom.uri)/'anomalies.csv').accepted.all()
    # the same file ingested again is the same Examples version: found, not duplicated, and usable now that it was accepted
    assert st.latest_artifact('Examples', run_id='g1', blocked=True).id == st.latest_artifact('Examples', run_id='g2').id
    assert not st.latest_artifact('Examples', run_id='g2').get('blocked')
    # asking to augment a table is a clear error naming why
    aug = cli('run', '--phases', 'data', '-p', 'source=csv', '-p', f'path={csv}', '-p', 'augment_copies=2', '--no-progress')
    assert aug.returncode == 1 and 'augmentation applies to unstructured data' in aug.stderr


def test_image_folder_source_in_the_pipeline(runs, tmp_path):
    root = _image_folder(tmp_path/'imgs', per_class=12)
    out = cli('run', '--phases', 'data', '-p', 'source=images', '-p', f'path={root}', '--run-id', 'img', '--no-progress')
    assert out.returncode == 0, out.stderr[-3000:]
    from mlops_nb.data.phase import load_examples
    from mlops_nb.core.store import Store
    frame, art = load_examples(Store(), 'img')
    assert art['kind'] == 'unstructured' and len(frame) == 120 and frame.item_id.str.contains('/').all()


def test_a_run_reads_only_its_own_augmented_copies(runs):
    "An earlier run's augmented images are never picked up by a later run of other data (the CSV-after-images case)."
    from mlops_nb.data.phase import load_examples
    from mlops_nb.core.store import Store
    st = Store()
    for run in ('images', 'table'): st.put_run(run, run_dir=str(runs/run))
    for run, role, version in (('images', 'dataset', 'v-img'), ('images', 'augmented', 'aug-img'), ('table', 'dataset', 'v-csv')):
        x = st.start_execution('data', run)
        folder = runs/run/f'{role}-{version}'; folder.mkdir(parents=True)
        pd.DataFrame({'item_id': ['a'], 'pixel_0': [1], 'label': [0]}).to_parquet(folder/'examples.parquet')
        st.record_output(x.id, 'Examples', str(folder), f'hash-{version}', run_id=run, role=role, version=version,
                         source=f'augmented v-img' if role == 'augmented' else run)
        st.finish_execution(x.id)
    assert load_examples(st, 'table')[1]['version'] == 'v-csv'
    with pytest.raises(LookupError, match="Run 'table' has no usable Examples \\(role=augmented\\)"):
        load_examples(st, 'table', role='augmented')
    assert load_examples(st, 'images', role='augmented')[1]['version'] == 'aug-img'
