# Runs the compose deployment's Python example models outside their servers, for test/infra/compose.test.ts:
# the Triton python-backend model (examples/triton/models/linear/<v>/model.py, with a stand-in for
# triton_python_backend_utils) and the TorchServe handler (examples/torchserve/linear_handler.py, with a
# stand-in context). Needs python3 and numpy (what Triton's python backend itself needs), nothing else.
#
# stdin:  {"rows_hex": "<float32 little-endian bytes of rows x 4, hex>", "json_rows": [[4 numbers], ...]}
# stdout: {"triton": {"<v>": {"scores_hex": "...", "classes": [...], "shapes": [[...], [...]]}},
#          "torchserve": {"<version>": {"load": null, "answers": [...], "status": {...}, "content_type": {...}}}}
import importlib.util
import json
import os
import sys
import types

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def stub_pb_utils():
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self._name, self._array = name, array

        def name(self):
            return self._name

        def as_numpy(self):
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    class TritonModelException(Exception):
        pass

    def get_input_tensor_by_name(request, name):
        return next((t for t in request.inputs if t.name() == name), None)

    pb.Tensor, pb.InferenceResponse, pb.TritonModelException = Tensor, InferenceResponse, TritonModelException
    pb.get_input_tensor_by_name = get_input_tensor_by_name
    sys.modules["triton_python_backend_utils"] = pb
    return pb


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_triton(pb, x):
    out = {}
    base = os.path.join(ROOT, "examples", "triton", "models", "linear")
    for version in sorted(d for d in os.listdir(base) if d.isdigit()):
        module = load(os.path.join(base, version, "model.py"), f"triton_linear_{version}")
        model = module.TritonPythonModel()
        model.initialize({"model_version": version, "model_name": "linear", "model_config": "{}"})
        request = types.SimpleNamespace(inputs=[pb.Tensor("INPUT0", x)])
        (response,) = model.execute([request])
        assert response.error is None, response.error
        tensors = {t.name(): t.as_numpy() for t in response.output_tensors}
        scores, classes = tensors["SCORES"], tensors["CLASS"]
        out[version] = {
            "scores_hex": scores.astype("<f4").tobytes().hex(),
            "scores_dtype": str(scores.dtype),
            "classes": [int(c) for c in classes],
            "classes_dtype": str(classes.dtype),
            "shapes": [list(scores.shape), list(classes.shape)],
        }
    return out


class Context:
    def __init__(self, version):
        self.manifest = {"model": {"modelName": "linear", "modelVersion": version}}
        self.status, self.content_type = {}, {}

    def set_response_status(self, code=200, phrase="", idx=0):
        self.status[str(idx)] = [code, phrase]

    def set_response_content_type(self, idx, value):
        self.content_type[str(idx)] = value


def run_torchserve(rows):
    module = load(os.path.join(ROOT, "examples", "torchserve", "linear_handler.py"), "linear_handler")
    text = json.dumps(rows)
    out = {}
    for version in ("1.0", "2.0"):
        context = Context(version)
        loaded = module.handle(None, context)  # TorchServe calls the entry point once at load time
        batch = [
            {"body": {"INPUT0": rows}},  # REST, application/json: TorchServe hands over the parsed body
            {"INPUT0": bytearray(text.encode())},  # gRPC: the map entry's bytes
            {"body": bytearray(json.dumps({"data": rows}).encode())},  # REST, another content type
            {"body": rows},  # a bare matrix
            {"body": {"INPUT0": [[1, 2, 3]]}},  # a short row: 400
            {"body": bytearray(b"not json")},  # 400
        ]
        answers = module.handle(batch, context)
        out[version] = {"load": loaded, "answers": answers, "status": context.status, "content_type": context.content_type}
    return out


def main():
    request = json.load(sys.stdin)
    x = np.frombuffer(bytes.fromhex(request["rows_hex"]), dtype="<f4").reshape(-1, 4)
    pb = stub_pb_utils()
    json.dump({"triton": run_triton(pb, x), "torchserve": run_torchserve(request["json_rows"])}, sys.stdout)


if __name__ == "__main__":
    main()
