"""The deployment phase in the pipeline: every strategy ran for real, decisions in the lineage, the log recorded for monitoring."""
import json
from pathlib import Path

from conftest import cli, store_of



def test_deployment_phase_runs_every_strategy(deployed):
    runs, env, out = deployed
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    st = store_of(runs)
    actions = [(a.get('action'), a.get('strategy')) for a in st.artifacts('DeploymentDecision', 'deploy')]
    for expected in [('deploy', 'shadow'), ('deploy', 'canary'), ('advance', 'canary'), ('promote', 'single'),
                     ('rollback', 'canary'), ('deploy', 'bluegreen'), ('switch', 'bluegreen'), ('rollback', 'bluegreen')]:
        assert expected in actions, (expected, actions)
    # the automatic rollback says why
    auto = [a for a in st.artifacts('DeploymentDecision', 'deploy') if a.get('action') == 'rollback' and a.get('strategy') == 'canary']
    assert auto and 'automatic rollback' in auto[-1].get('reason') and 'error rate' in auto[-1].get('reason')
    for fig in ('shadow_report', 'canary_guardrails', 'traffic_split'):
        assert (runs/'deploy'/'deployment'/'figures'/f'{fig}.png').is_file(), fig


def test_decisions_are_in_the_lineage_of_the_deployed_model(deployed):
    runs, env, _ = deployed
    st = store_of(runs)
    pushed = st.latest_artifact('PushedModel', run_id='deploy')
    model = st.get_artifact(pushed['model_id'])
    down = st.downstream(model.id)
    decisions = [a for a in down.artifacts() if a.type == 'DeploymentDecision']
    assert len(decisions) >= 5, [str(a) for a in down.artifacts()]
    txt = cli('lineage', str(model.id), '--down', env=env).stdout
    assert 'DeploymentDecision#' in txt and 'deployment.decision execution' in txt
    # each decision document holds the configuration it put live
    doc = json.loads((Path(decisions[0].uri)/'decision.json').read_text())
    assert {'action', 'reason', 'config'} <= set(doc) and doc['config']['name'] == 'digits'


def test_prediction_log_is_recorded_for_monitoring(deployed):
    runs, *_ = deployed
    st = store_of(runs)
    log = st.latest_artifact('PredictionLog', run_id='deploy')
    from mlops_nb.serving.predlog import read_log, read_rejections
    df = read_log(Path(log.uri)/'predictions.sqlite', features=True)
    assert df['request_id'].nunique() == log['requests'] and len(df) == log['rows']
    assert set(df['strategy']) >= {'shadow', 'canary', 'bluegreen'}
    assert df['feedback'].notna().sum() > 50 and df['shadow_predicted'].notna().sum() >= 150
    assert {'ok', 'discarded', 'error'} <= set(df['status'])  # discarded by the rules; errors of the fault drill
    assert df.filter(like='pixel_').shape[1] == 64 and (df['latency_ms'] > 0).all()
    kinds = set(read_rejections(Path(log.uri)/'predictions.sqlite')['kind'])
    assert {'bad_shape', 'bad_type', 'out_of_range', 'empty', 'not_json', 'unknown_model', 'unknown_label', 'unauthorized'} <= kinds, kinds
