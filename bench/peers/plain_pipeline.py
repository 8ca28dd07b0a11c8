"""The plain peer of bench/pipeline_vs_tfx.py: the TFX pipeline's work as one Python script in the project's venv.

The 1,797 sklearn digits (64 pixels 0-16 and a label) as a DataFrame, split 8:2 into train/eval (seeded shuffle);
TFDV statistics of both splits, a schema inferred from train, eval validated against it; the MLP of `arch=mlp`
(Dense(64, relu) -> Dropout(0.1) -> Dense(10, softmax), Adam 2e-3, batch 64, 10 epochs, pixels / 16) in Keras 3;
eval accuracy against --threshold; when it passes, the model is exported as a SavedModel to <workdir>/serving/<time>
(what TFX's Pusher copies). No mlops_nb imports. Exit status 0 when pushed, 3 when below the threshold, 4 on anomalies.

    .venv/bin/python bench/peers/plain_pipeline.py WORKDIR [--threshold 0.9] [--epochs 10]
"""
import argparse, os, sys, time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

CLASSES, BATCH_SIZE, LEARNING_RATE, HIDDEN, DROPOUT, SEED, SCALE = 10, 64, 2e-3, 64, 0.1, 0, 16.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('workdir', type=Path, help='the statistics, schema and pushed model go here')
    ap.add_argument('--threshold', type=float, default=0.9, help='least eval accuracy that gets the model pushed')
    ap.add_argument('--epochs', type=int, default=10)
    a = ap.parse_args()
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    import numpy as np, pandas as pd
    from sklearn.datasets import load_digits
    import tensorflow_data_validation as tfdv
    d = load_digits()
    df = pd.DataFrame(d.data.astype('int64'), columns=[f"pixel_{i}" for i in range(64)])
    df['label'] = d.target.astype('int64')
    order = np.random.default_rng(SEED).permutation(len(df))
    cut = int(0.8 * len(df))
    train, evaluation = df.iloc[order[:cut]].reset_index(drop=True), df.iloc[order[cut:]].reset_index(drop=True)

    train_stats = tfdv.generate_statistics_from_dataframe(train)
    eval_stats = tfdv.generate_statistics_from_dataframe(evaluation)
    schema = tfdv.infer_schema(train_stats)
    tfdv.write_schema_text(schema, str(work / 'schema.pbtxt'))
    anomalies = tfdv.validate_statistics(eval_stats, schema)
    if anomalies.anomaly_info:
        print(f"anomalies in eval: {sorted(anomalies.anomaly_info)}")
        sys.exit(4)

    import keras
    keras.utils.set_random_seed(SEED)
    X_train, y_train = train.drop(columns='label').to_numpy('float32') / SCALE, train['label'].to_numpy()
    X_eval, y_eval = evaluation.drop(columns='label').to_numpy('float32') / SCALE, evaluation['label'].to_numpy()
    inp = keras.Input((64,), name='pixels')
    x = keras.layers.Dense(HIDDEN, activation='relu')(inp)
    x = keras.layers.Dropout(DROPOUT, seed=SEED)(x)
    out = keras.layers.Dense(CLASSES, activation='softmax', name='probabilities')(x)
    model = keras.Model(inp, out, name='mlp_classifier')
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    model.fit(X_train, y_train, validation_data=(X_eval, y_eval), batch_size=BATCH_SIZE, epochs=a.epochs, verbose=0)
    accuracy = model.evaluate(X_eval, y_eval, batch_size=256, verbose=0, return_dict=True)['accuracy']
    print(f"eval accuracy: {accuracy:.4f}")
    if accuracy < a.threshold:
        print(f"not blessed (< {a.threshold}): nothing pushed")
        sys.exit(3)
    dest = work / 'serving' / str(int(time.time()))
    model.export(str(dest), verbose=False)
    print(f"pushed: {dest}")


if __name__ == '__main__':
    main()
