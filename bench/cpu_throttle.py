"""Does the model call slow down the code that follows it? On CPUs with AVX-512 frequency licences (Intel Xeon
Skylake-SP / Cascade Lake, such as this 2-core VM), a burst of AVX-512 instructions lowers the core's clock for
the next few milliseconds, so the Python code after it (HTTP parsing, routing, logging) runs slower too. The
bare FastAPI floor of `serving_speed.py` executes none of it; our server calls LiteRT for every request.

For each library call on the serving path, this prints the call's own time and how much longer a fixed piece of
ordinary Python work (about 300 µs: JSON parsing, sorting, a dict) takes right after it than after no call
(medians; the calls take turns in blocks of 100, so that the machine's slow spells hit all of them alike).
LiteRT is timed with its three CPU kernel sets: XNNPACK (the default), the built-in kernels and the reference
kernels. The model is the pipeline's CNN, untrained: the weights do not change the cost.

    python bench/cpu_throttle.py [--rounds 3] [--repeat 1500]
"""
from __future__ import annotations
import argparse, json, os, statistics, tempfile, time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import numpy as np

BODY = json.dumps({'instances': [[float(v) for v in np.random.default_rng(0).integers(0, 17, 64)]], 'key': 'user-1'}).encode()


def python_work():
    "About 300 µs of the kind of work the server does around a prediction, in plain Python."
    for _ in range(20):
        doc = json.loads(BODY); x = doc['instances'][0]; sorted(x); {k: v for k, v in enumerate(x)}


def after(call, repeat: int, skip: int = 5) -> list[float]:
    "µs of `python_work` right after `call()`, `repeat` times; the first `skip` are dropped (the previous call's effect)."
    times = []
    for _ in range(repeat):
        call()
        t = time.perf_counter(); python_work(); times.append(time.perf_counter() - t)
    return [t * 1e6 for t in times[skip:]]


def own_time(call, n: int = 2000) -> float:
    for _ in range(200): call()
    t = time.perf_counter()
    for _ in range(n): call()
    return (time.perf_counter() - t) / n * 1e6


def cnn_tflite(folder: Path) -> Path:
    "The pipeline's CNN, untrained, converted to a .tflite file."
    from mlops_nb.modeling.export import export_model
    from mlops_nb.modeling.train import TrainConfig, build_model
    return export_model(build_model(TrainConfig(arch='cnn'), 10, (8, 8, 1)), folder)['tflite']


def interpreter_call(path: Path, kind: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    resolver = {'xnnpack': OpResolverType.AUTO, 'builtin': OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                'reference': OpResolverType.BUILTIN_REF}[kind]
    it = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]['index'], it.get_output_details()[0]['index']
    X = np.random.default_rng(1).random((1, 8, 8, 1), dtype=np.float32)
    def call(): it.set_tensor(i, X); it.invoke(); return it.get_tensor(o)
    return call


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3, help='rounds over all calls (default 3)')
    ap.add_argument('--repeat', type=int, default=1500, help='timed pieces of work per call and round, in blocks of 100 that take turns (default 1500)')
    args = ap.parse_args(argv)
    import orjson
    print('building the CNN and converting it to .tflite ...', flush=True)
    model = cnn_tflite(Path(tempfile.mkdtemp(prefix='throttle-')))
    P = np.random.default_rng(2).random((1, 10), dtype=np.float32)
    A, B = np.random.default_rng(3).random((8, 64), dtype=np.float32), np.random.default_rng(4).random((64, 64), dtype=np.float32)
    inst = orjson.loads(BODY)['instances']
    calls = {
        'no call': lambda: None,
        'numpy: array, divide, argmax': lambda: (np.array(inst, dtype=np.float32) / 16.0, P[0].argmax()),
        'numpy: matrix product 8x64 @ 64x64 (BLAS)': lambda: A @ B,
        'json.loads (standard library)': lambda: json.loads(BODY),
        'orjson.loads (the server\'s parser)': lambda: orjson.loads(BODY),
        'orjson.dumps': lambda: orjson.dumps({'p': P[0]}, option=orjson.OPT_SERIALIZE_NUMPY),
        'LiteRT, XNNPACK kernels (default)': interpreter_call(model, 'xnnpack'),
        'LiteRT, built-in kernels': interpreter_call(model, 'builtin'),
        'LiteRT, reference kernels': interpreter_call(model, 'reference'),
    }
    samples = {name: [] for name in calls}
    blocks = max(1, args.repeat // 100)   # short blocks, the calls taking turns: a slow spell of the machine hits all of them
    for r in range(args.rounds):
        for _ in range(blocks):
            for name, call in calls.items(): samples[name] += after(call, 100)
        print(f'round {r + 1}/{args.rounds} done', flush=True)
    median = {name: statistics.median(v) for name, v in samples.items()}
    base = median['no call']
    cpuinfo = Path('/proc/cpuinfo'); flags = cpuinfo.read_text() if cpuinfo.exists() else ''
    model_name = next((l.split(':', 1)[1].strip() for l in flags.splitlines() if l.startswith('model name')), 'unknown CPU')
    print(f"\n{model_name}; AVX-512: {'yes' if ' avx512f' in flags else 'no'}")
    print(f"{'call before the work':42s} {'call µs':>8s} {'work after µs':>14s} {'slower by':>10s}")
    for name, call in calls.items():
        own = own_time(call) if name != 'no call' else 0.0
        print(f"{name:42s} {own:8.1f} {median[name]:14.1f} {median[name] / base - 1:+10.1%}")


if __name__ == '__main__':
    main()
