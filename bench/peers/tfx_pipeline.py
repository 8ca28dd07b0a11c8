"""The TFX 1.16 peer of bench/pipeline_vs_tfx.py: the digits through a local TFX pipeline, in TFX's own venv.

CsvExampleGen (the 1,797 sklearn digits written as CSV, hash-split 8:2 into train/eval) -> StatisticsGen -> SchemaGen
-> ExampleValidator -> Trainer (bench/peers/tfx_trainer_module.py: the MLP of `arch=mlp`, 10 epochs) -> Evaluator
(sparse categorical accuracy >= --threshold, else the model is not blessed) -> Pusher to <workdir>/serving.
Run by LocalDagRunner with Beam's DirectRunner in memory; pipeline root and MLMD sqlite under <workdir>.
Exit status 0 when the model was pushed, 3 when the Evaluator did not bless it.

    bench/peers/tfx/.venv/bin/python bench/peers/tfx_pipeline.py WORKDIR [--threshold 0.9]
"""
import argparse, os, sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('GRPC_VERBOSITY', 'ERROR')

HERE = Path(__file__).resolve().parent
MODULE = HERE / 'tfx_trainer_module.py'


def write_digits_csv(folder: Path) -> Path:
    "The sklearn digits as one CSV (pixel_0 … pixel_63, label; integers 0-16) in `folder`."
    from sklearn.datasets import load_digits
    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'digits.csv'
    with path.open('w') as f:
        f.write(','.join([f"pixel_{i}" for i in range(64)] + ['label']) + '\n')
        for x, y in zip(d.data.astype(int), d.target):
            f.write(','.join(map(str, x)) + f",{y}\n")
    return path


def build_pipeline(work: Path, threshold: float):
    from tfx import v1 as tfx
    import tensorflow_model_analysis as tfma
    data = write_digits_csv(work / 'data').parent
    output = tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
        tfx.proto.SplitConfig.Split(name='train', hash_buckets=8), tfx.proto.SplitConfig.Split(name='eval', hash_buckets=2)]))
    gen = tfx.components.CsvExampleGen(input_base=str(data), output_config=output)
    stats = tfx.components.StatisticsGen(examples=gen.outputs['examples'])
    schema = tfx.components.SchemaGen(statistics=stats.outputs['statistics'], infer_feature_shape=True)
    validator = tfx.components.ExampleValidator(statistics=stats.outputs['statistics'], schema=schema.outputs['schema'])
    trainer = tfx.components.Trainer(
        module_file=str(MODULE), examples=gen.outputs['examples'], schema=schema.outputs['schema'],
        train_args=tfx.proto.TrainArgs(), eval_args=tfx.proto.EvalArgs())
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key='label', signature_name='serving_default')],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[tfma.MetricConfig(
            class_name='SparseCategoricalAccuracy',
            threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={'value': threshold})))])])
    evaluator = tfx.components.Evaluator(examples=gen.outputs['examples'], model=trainer.outputs['model'], eval_config=eval_config)
    pusher = tfx.components.Pusher(
        model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(base_directory=str(work / 'serving'))))
    return tfx.dsl.Pipeline(
        pipeline_name='digits_tfx', pipeline_root=str(work / 'root'),
        components=[gen, stats, schema, validator, trainer, evaluator, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(str(work / 'metadata.sqlite')),
        enable_cache=False,
        beam_pipeline_args=['--direct_running_mode=in_memory', '--direct_num_workers=1'])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('workdir', type=Path, help='pipeline root, MLMD sqlite, data and pushed model go here')
    ap.add_argument('--threshold', type=float, default=0.9, help='least eval accuracy the Evaluator blesses')
    a = ap.parse_args()
    import absl.logging
    absl.logging.set_verbosity(absl.logging.ERROR)
    import logging
    logging.getLogger().setLevel(logging.ERROR)
    import tensorflow as tf
    tf.get_logger().setLevel('ERROR')
    from tfx import v1 as tfx
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(build_pipeline(work, a.threshold))
    import tensorflow_model_analysis as tfma
    evaluation = next((work / 'root' / 'Evaluator' / 'evaluation').iterdir())
    metrics = tfma.load_eval_result(str(evaluation)).slicing_metrics[0][1]['']['']
    print(f"eval accuracy: {metrics['sparse_categorical_accuracy']['doubleValue']:.4f}")
    pushed = list((work / 'serving').glob('*/saved_model.pb'))
    print(f"pushed: {pushed[0].parent}" if pushed else 'not blessed: nothing pushed')
    sys.exit(0 if pushed else 3)


if __name__ == '__main__':
    main()
