"""The KServe peer of bench/serving_speed.py (variant f): KServe's Python model server (`kserve` 0.21, V1 protocol,
`POST /v1/models/NAME:predict` with `{"instances": …}`) over a `kserve.Model` subclass that runs the same `.tflite`
file with the same LiteRT interpreter as our server (`ai_edge_litert`, one thread, batches padded to a power of two,
one `set_tensor`/`invoke`/`get_tensor` per call), and answers as ours does: each instance's class and probabilities.
Inputs are divided by the `divide_by` of the `contract.json` beside the model (16 for the digits), as ours does.

Quiet by default: KServe's per-request logging (uvicorn's access log, the timing middleware's and the model's latency
lines) is off and so is its gRPC server; `--log` keeps KServe's default logging. It listens on 127.0.0.1 only (KServe
binds 0.0.0.0 with no option to change it: its uvicorn config is patched here). Runs in bench/peers/kserve/.venv
(bench/peers/build_kserve.sh), not in the project's venv:

    bench/peers/kserve/.venv/bin/python bench/peers/kserve_server.py MODEL.tflite digits 8080 [--log]
"""
import argparse, copy, json, logging.config, sys, warnings
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
ap.add_argument('tflite', help='the .tflite model file')
ap.add_argument('name', help='the model name in the URL path')
ap.add_argument('port', type=int, help='HTTP port on 127.0.0.1')
ap.add_argument('--log', action='store_true', help="keep KServe's per-request logging (default: off)")
opts = ap.parse_args()
sys.argv = sys.argv[:1]   # kserve parses sys.argv when imported: ours are not its

import uvicorn
import kserve
import kserve.logging as klog
from ai_edge_litert.interpreter import Interpreter


class _Loopback(uvicorn.Config):
    def __init__(self, *a, **kw): super().__init__(*a, **{**kw, 'host': '127.0.0.1'})
uvicorn.Config = _Loopback   # KServe's RESTServer builds uvicorn.Config(host="0.0.0.0", …) when it starts


class LiteRTModel(kserve.Model):
    "A .tflite model on the LiteRT interpreter, as mlops_nb.modeling.export.LiteModel runs it."
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = Path(path)
        contract = self.path.parent/'contract.json'
        norm = json.loads(contract.read_text()).get('normalisation', {}) if contract.is_file() else {}
        self.scale = np.float32(norm.get('divide_by', 16))
        self.load()

    def load(self) -> bool:
        it = self.interpreter = Interpreter(model_path=str(self.path), num_threads=1)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        self._in, self._out = inp['index'], out['index']
        self.shape = tuple(int(s) for s in inp['shape'][1:])
        self._batch = 1
        self.ready = True
        return self.ready

    def _run(self, X: np.ndarray) -> np.ndarray:
        X = X.reshape(-1, *self.shape)
        n = len(X); size = 1 << (n - 1).bit_length()
        if size != self._batch:
            self.interpreter.resize_tensor_input(self._in, [size, *self.shape])
            self.interpreter.allocate_tensors(); self._batch = size
        if size != n: X = np.concatenate([X, np.zeros((size - n, *self.shape), np.float32)])
        it = self.interpreter
        it.set_tensor(self._in, X)
        it.invoke()
        P = it.get_tensor(self._out)
        return P if size == n else P[:n]

    def predict(self, payload: dict, headers: dict = None) -> dict:
        X = np.asarray(payload['instances'], np.float32) / self.scale
        P = self._run(X)
        return {'predictions': [{'class': int(p.argmax()), 'probabilities': p.tolist()} for p in P]}


if __name__ == '__main__':
    config = copy.deepcopy(klog.KSERVE_LOG_CONFIG)
    if not opts.log:
        for name in ('kserve', 'kserve.trace', 'uvicorn', 'uvicorn.error', 'uvicorn.access'): config['loggers'][name]['level'] = 'WARNING'
        warnings.simplefilter('ignore', DeprecationWarning)   # FastAPI 0.165 on KServe's ORJSONResponse, once per call site
    logging.config.dictConfig(config)   # configured here, so ModelServer leaves it as it is
    model = LiteRTModel(opts.name, opts.tflite)
    kserve.ModelServer(http_port=opts.port, workers=1, enable_grpc=False, enable_latency_logging=opts.log).start([model])
