# Writes the reference servers' `linear` model (reference/tfserving/models.ts, runLinear) as TensorFlow
# SavedModels for TF Serving: <base>/1 and <base>/2 (the two versions differ in their bias), each with a
# `serving_default` signature INPUT0 float32 [None, 4] -> SCORES float32 [None, 3], CLASS int64 [None].
#
#   python3 export_linear.py /models/linear        (the `tf-export` service of docker-compose.yml)
#
# A version directory that already exists is left alone, so running it again is a no-op. Each version is
# written to a temporary directory first and renamed into place, so TF Serving never sees half a model.
#
# SCORES = x . W + b in float32, in the reference's order: acc = acc + x[:, k] * W[k] for k = 0..3, then
# acc + b (one rounding per operation, as the reference's f32(acc + f32(x[k] * W[k][j]))). CLASS is the index
# of the first maximum, computed with strict '>' from -inf as the reference does (tf.argmax does not promise
# which index wins a tie).
#
# test/infra/compose.test.ts checks that the numbers below equal the reference's.
import os
import shutil
import sys

import tensorflow as tf

# One line each: the test reads them as JSON.
LINEAR_W = [[0.5, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.5, 2.0, 1.0], [1.0, -0.25, 0.5]]
LINEAR_BIAS = {"1": [0.1, -0.2, 0.3], "2": [1.0, 0.0, -1.0]}


class Linear(tf.Module):
    def __init__(self, bias):
        super().__init__()
        self.w = tf.constant(LINEAR_W, dtype=tf.float32)
        self.b = tf.constant(bias, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec(shape=[None, 4], dtype=tf.float32, name="INPUT0")])
    def serve(self, INPUT0):
        rows = tf.shape(INPUT0)[0]
        acc = tf.zeros(tf.stack([rows, 3]), dtype=tf.float32)
        for k in range(4):  # a Python loop: unrolled when traced, so the order is fixed
            acc = acc + INPUT0[:, k : k + 1] * self.w[k]
        scores = acc + self.b
        best = tf.zeros(tf.stack([rows]), dtype=tf.int64)
        best_score = tf.fill(tf.stack([rows]), tf.constant(-float("inf"), dtype=tf.float32))
        for j in range(3):
            better = scores[:, j] > best_score
            best = tf.where(better, tf.constant(j, dtype=tf.int64), best)
            best_score = tf.where(better, scores[:, j], best_score)
        return {"SCORES": scores, "CLASS": best}


def export(base):
    os.makedirs(base, exist_ok=True)
    for version, bias in sorted(LINEAR_BIAS.items()):
        target = os.path.join(base, version)
        if os.path.exists(target):
            print(f"{target}: exists, left alone")
            continue
        staging = os.path.join(base, f".{version}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        module = Linear(bias)
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serve.get_concrete_function()})
        os.rename(staging, target)
        print(f"{target}: written")


if __name__ == "__main__":
    export(sys.argv[1] if len(sys.argv) > 1 else "/models/linear")
