# The reference servers' `linear` model (reference/triton/models.ts, runLinear) for Triton's python backend.
#
# SCORES = x . W + b in float32, evaluated in the reference's fixed order so every server gives the same bits:
#   acc = 0; for k in 0..3: acc = f32(acc + f32(x[k] * W[k][j])); then acc = f32(acc + f32(b[j]))
# CLASS is the index of the first maximum score (strict '>' from -inf, as the reference does).
#
# The same file serves every version directory (1/ and 2/): the version Triton loads it as picks the bias.
# test/infra/compose.test.ts checks that the numbers below equal the reference's and, where python3 and numpy
# are installed, runs this file against the reference on random inputs.
import numpy as np

import triton_python_backend_utils as pb_utils

# One line each: the test reads them as JSON.
LINEAR_W = [[0.5, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.5, 2.0, 1.0], [1.0, -0.25, 0.5]]
LINEAR_BIAS = {"1": [0.1, -0.2, 0.3], "2": [1.0, 0.0, -1.0]}


def linear(x, bias):
    """SCORES [rows, 3] float32 and CLASS [rows] int64 for x [rows, 4] float32."""
    w = np.asarray(LINEAR_W, dtype=np.float32)
    b = np.asarray(bias, dtype=np.float32)
    rows = x.shape[0]
    scores = np.empty((rows, 3), dtype=np.float32)
    for j in range(3):
        acc = np.zeros(rows, dtype=np.float32)
        for k in range(4):
            # float32 * float32 and float32 + float32: numpy rounds each operation to float32 on its own.
            acc = acc + x[:, k] * w[k, j]
        scores[:, j] = acc + b[j]
    best = np.zeros(rows, dtype=np.int64)
    best_score = np.full(rows, -np.inf, dtype=np.float32)
    for j in range(3):
        better = scores[:, j] > best_score
        best[better] = j
        best_score[better] = scores[better, j]
    return scores, best


class TritonPythonModel:
    def initialize(self, args):
        version = args["model_version"]
        if version not in LINEAR_BIAS:
            raise pb_utils.TritonModelException(
                f"linear has no bias for version {version} (known: {', '.join(sorted(LINEAR_BIAS))})"
            )
        self.bias = LINEAR_BIAS[version]

    def execute(self, requests):
        responses = []
        for request in requests:
            # Triton has already checked the name, datatype and shape [-1, 4] against config.pbtxt.
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy().astype(np.float32, copy=False)
            scores, classes = linear(x.reshape(-1, 4), self.bias)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("SCORES", scores), pb_utils.Tensor("CLASS", classes)]
                )
            )
        return responses
