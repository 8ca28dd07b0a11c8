"""TFX Trainer module of bench/peers/tfx_pipeline.py: the MLP of mlops_nb's `arch=mlp` on the 8x8 digits, in tf_keras.

Same model and training as mlops_nb.modeling.train (TrainConfig defaults): the 64 pixels scaled 0-1 (divided by 16),
Dense(64, relu) -> Dropout(0.1) -> Dense(10, softmax), Adam(2e-3), sparse categorical cross-entropy, batch 64,
`epochs` passes over the train split (10 unless BENCH_EPOCHS says otherwise), seeded. The model is saved as a
SavedModel whose `serving_default` signature reads serialized tf.Examples, as the Evaluator and TF Serving expect.

tf_keras (Keras 2) rather than Keras 3: TFMA's Evaluator loads the model with it. TF 2.16's AutoGraph converts tf_keras'
own code on the first `fit` (its rules skip `keras`, not `tf_keras`), which costs ~13 s on this machine; unless
BENCH_TFX_STOCK_AUTOGRAPH=1, the rule TF lacks is added here, so that TFX is measured at its best.
"""
import os

import tensorflow as tf
import tf_keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

PIXELS = [f"pixel_{i}" for i in range(64)]   # mlops_nb.data.ingest.PIXELS
LABEL = 'label'
CLASSES = 10
BATCH_SIZE, LEARNING_RATE, HIDDEN, DROPOUT, SEED = 64, 2e-3, 64, 0.1, 0   # mlops_nb's TrainConfig defaults
SCALE = 16.0                                                              # the digits' value scale (0-16)

if os.environ.get('BENCH_TFX_STOCK_AUTOGRAPH') != '1':
    from tensorflow.python.autograph.core import config as _ag_config, config_lib as _ag_config_lib
    if not any(getattr(r, 'name_prefix', '') == 'tf_keras' for r in _ag_config.CONVERSION_RULES):
        _ag_config.CONVERSION_RULES = (_ag_config_lib.DoNotConvert('tf_keras'),) + tuple(_ag_config.CONVERSION_RULES)


def _pixels(features: dict) -> tf.Tensor:
    "The 64 int64 pixel features (each (batch, 1)) as one float32 (batch, 64) tensor scaled to 0-1."
    return tf.concat([tf.cast(features[f], tf.float32) for f in PIXELS], axis=1) / SCALE


def _dataset(files, data_accessor, schema, shuffle: bool) -> tf.data.Dataset:
    ds = data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=BATCH_SIZE, label_key=LABEL, num_epochs=1, shuffle=shuffle, shuffle_seed=SEED),
        schema)
    return ds.map(lambda f, y: (_pixels(f), tf.reshape(y, [-1])))


def _build_model() -> tf_keras.Model:
    inp = tf_keras.Input((len(PIXELS),), name='pixels')
    x = tf_keras.layers.Dense(HIDDEN, activation='relu')(inp)
    x = tf_keras.layers.Dropout(DROPOUT, seed=SEED)(x)
    out = tf_keras.layers.Dense(CLASSES, activation='softmax', name='probabilities')(x)
    model = tf_keras.Model(inp, out, name='mlp_classifier')
    model.compile(optimizer=tf_keras.optimizers.Adam(LEARNING_RATE), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    return model


def run_fn(fn_args: tfx.components.FnArgs):
    "The Trainer's entry point: train on the train split, watch the eval split, save with a tf.Example serving signature."
    tf_keras.utils.set_random_seed(SEED)
    schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, tfx.proto.schema_pb2.Schema()) if hasattr(tfx.proto, 'schema_pb2') else None
    if schema is None:
        from tensorflow_metadata.proto.v0 import schema_pb2
        schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    train = _dataset(fn_args.train_files, fn_args.data_accessor, schema, shuffle=True)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, schema, shuffle=False)
    model = _build_model()
    epochs = int(os.environ.get('BENCH_EPOCHS', '10'))
    model.fit(train, validation_data=evaluation, epochs=epochs, verbose=0)

    spec = {f: tf.io.FixedLenFeature([1], tf.int64) for f in PIXELS}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
    def serve_examples(serialized):
        return {'probabilities': model(_pixels(tf.io.parse_example(serialized, spec)), training=False)}

    model.save(fn_args.serving_model_dir, save_format='tf', signatures={'serving_default': serve_examples})
