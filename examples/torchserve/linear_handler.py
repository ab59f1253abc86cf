# The reference servers' `linear` model (reference/torchserve/models.ts, runLinear) as a TorchServe handler:
# no weights file, no torch; plain Python with explicit float32 rounding, so it gives the reference's bits.
#
#   torch-model-archiver --model-name linear --version 2.0 --handler linear_handler.py -f
#
# Request (one JSON document, as the gateway's `torchserve: { request: json }` mapping sends it):
#   REST body  {"INPUT0": [[x0, x1, x2, x3], ...]}   (or {"data": [[...]]}, or a bare [[...]])
#   gRPC       input map entry "INPUT0" (or "data") holding [[...]] as JSON text
# Answer: {"SCORES": [[s0, s1, s2], ...], "CLASS": [c, ...]} with SCORES = x . W + b in float32 in the
# reference's fixed order (acc = f32(acc + f32(f32(x[k]) * W[k][j])) over k, then acc = f32(acc + f32(b[j])))
# and CLASS the index of the first maximum. The archive's version picks the bias: "1.0" -> 1, "2.0" -> 2.
#
# test/infra/compose.test.ts checks that the numbers below equal the reference's and, where python3 is
# installed, runs this handler against the reference on random inputs.
import json
import math
import struct

# One line each: the test reads them as JSON.
LINEAR_W = [[0.5, -1.0, 0.25], [1.5, 0.5, -0.75], [-0.5, 2.0, 1.0], [1.0, -0.25, 0.5]]
LINEAR_BIAS = {"1": [0.1, -0.2, 0.3], "2": [1.0, 0.0, -1.0]}

DEFAULT_VERSION = "2"


def f32(value):
    """The float32 nearest to value (round half to even), as a Python float; like JavaScript's Math.fround."""
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:  # rounds to infinity
        return math.copysign(math.inf, value)


class BadRequest(Exception):
    pass


def linear(rows, bias):
    scores, classes = [], []
    for row in rows:
        out, best, best_score = [], 0, -math.inf
        for j in range(3):
            acc = 0.0
            for k in range(4):
                acc = f32(acc + f32(f32(row[k]) * LINEAR_W[k][j]))
            acc = f32(acc + f32(bias[j]))
            out.append(acc)
            if acc > best_score:  # strict: the first maximum wins
                best, best_score = j, acc
        scores.append(out)
        classes.append(best)
    return {"SCORES": scores, "CLASS": classes}


def _json(value):
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise BadRequest(f"input is not JSON: {e}")
    return value  # TorchServe already parsed an application/json body


def _finite(v):
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond the float range
        return False


def _rows(request):
    """The [rows][4] matrix of one request, whichever way it came."""
    for key in ("INPUT0", "body", "data"):
        if key in request:
            value = _json(request[key])
            break
    else:
        raise BadRequest('expected {"INPUT0": [[4 floats], ...]}, {"data": [[...]]} or [[...]]')
    if isinstance(value, dict):
        value = value.get("INPUT0", value.get("data"))
    if not isinstance(value, list):
        raise BadRequest(f'"INPUT0" must be a list of rows, got {json.dumps(value)}')
    for r, row in enumerate(value):
        if not isinstance(row, list) or len(row) != 4:
            raise BadRequest(f'"INPUT0" row {r} must be a list of 4 numbers')
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v):
                raise BadRequest(f'"INPUT0"[{r}][{c}] must be a number, got {json.dumps(v)}')
    return value


def _bias(context):
    try:
        version = str(context.manifest["model"]["modelVersion"])
    except (AttributeError, KeyError, TypeError):
        version = DEFAULT_VERSION
    key = version.split(".")[0]
    return LINEAR_BIAS.get(key, LINEAR_BIAS[DEFAULT_VERSION])


def handle(data, context):
    """TorchServe's module-level entry point: one answer per request of the batch, in order."""
    if data is None:  # the worker's load-time call
        return None
    bias = _bias(context)
    answers = []
    for idx, request in enumerate(data):
        try:
            body = linear(_rows(request), bias)
            answers.append(json.dumps(body))
        except BadRequest as e:
            context.set_response_status(400, "Bad Request", idx)
            answers.append(json.dumps({"code": 400, "type": "BadRequestException", "message": str(e)}))
        context.set_response_content_type(idx, "application/json")
    return answers
