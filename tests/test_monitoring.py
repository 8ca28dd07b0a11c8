"""The monitoring phase in the pipeline: changes detected through the real server, no false alarm on clean traffic, every window in the store."""
import json
from pathlib import Path

from conftest import cli, store_of



def test_monitoring_detects_simulated_change_without_false_alarms(monitored):
    runs, env, out = monitored
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    st = store_of(runs)
    [x] = st.executions('monitor', 'monitoring')
    assert x.state == 'COMPLETE' and x['windows'] == 10
    assert x['changes_detected'] == 2 and x['false_alarms'] == 0, x.properties
    assert x['calibration_windows'] == 6 and x['noise_floor_allowed'] >= 0      # the floor was measured on windows of its own
    assert x['judged_features'] == 48                                           # of the 64 pixels, those that vary in training
    reports = st.artifacts('MonitoringReport', 'monitor')
    assert len(reports) == 10
    clean = [r for r in reports if r['strength'] == 0]
    changed = [r for r in reports if r['strength'] == 1]
    assert all(r['detected'] == 0 and r['alerts'] == 0 for r in clean), [r.properties for r in clean]
    assert all(r['detected'] == 1 for r in changed)
    # rescaled pixels (0-1 instead of 0-16) are discarded by the data rules: the key metrics alert says what to do
    doc = json.loads((Path(changed[-1].uri)/'report.json').read_text())
    assert doc['drift']['over_floor'] > doc['noise_floor']['allowed'] == x['noise_floor_allowed'], doc
    assert doc['noise_floor']['features'] == x['judged_features']
    assert any('discard_rate' in a and 'investigate the scanning upstream' in a for a in doc['alerts']), doc['alerts']
    for fig in ('server_load', 'drift_rate', 'lineage'):
        assert (runs/'monitor'/'monitoring'/'figures'/f'{fig}.png').is_file(), fig


def test_reports_are_linked_to_model_schema_and_metrics_config(monitored):
    runs, env, _ = monitored
    st = store_of(runs)
    report = st.latest_artifact('MonitoringReport', run_id='monitor')
    up = {a.type for a in st.upstream(report.id).artifacts()}
    assert {'Model', 'Schema', 'MetricsConfig', 'PredictionLog', 'PushedModel', 'Examples'} <= up, up
    model = st.get_artifact(st.latest_artifact('PushedModel', run_id='deploy')['model_id'])
    assert report.id in {a.id for a in st.downstream(model.id).artifacts()}
    cfg = st.latest_artifact('MetricsConfig', run_id='monitor')
    assert cfg['version'].startswith('1-') and (Path(cfg.uri)/'metrics.yaml').is_file()
    txt = cli('lineage', str(report.id), env=env).stdout
    assert 'MetricsConfig#' in txt and 'deployment execution' in txt
