#!/usr/bin/python3
"""Conformance of `tandem run-model` against ONNX Runtime (tools/ort_run.js).

Run by tests/suite_models.sh from the repository root with Debian's
/usr/bin/python3 (numpy, onnx, PIL). Environment: BUILD (default build),
TANDEM (default $BUILD/tandem), TEST_DATA (default data).

Models: every generated test model ($BUILD/test-models, else
build/test-models; `make test-models` makes them) and the two real int8
models in $TEST_DATA/models/st-int8. Inputs: random data with fixed seeds, and
the images of $TEST_DATA/images (float models: resize to the input size, scale
to [0,1], ImageNet mean/std, NCHW; uint8 NHWC models: raw RGB after a plain
bilinear resize).

Rules (from the engine issue):
  float32 models   max |tandem - ORT| <= 1e-4 * max |ORT|
  bf16 runs        cosine(tandem bf16, ORT f32) >= 0.999
  int8 models      at most 1 % of outputs differ by more than one quantisation
                   step, and the same top-1 on every image. The step is that
                   of the output itself: for a uint8/int8 output one integer
                   unit; for a float output produced by DequantizeLinear (the
                   MobileNetV2 int8 softmax) that node's scale (1/256 there).
                   Top-1 ties (quantised probabilities are often equal) count
                   as the same answer when tandem's top class holds ORT's
                   maximum value.
MODELS_FILTER=substring limits the run to the model files whose name holds it.

Variants: --threads 1 and 2; --precision bf16 on the MobileNetV2/ResNet50
models; --backend ref when `tandem run-model --help` offers it; batch 2 on
dynamic-batch models when it offers --batch.

Prints one "ok - ..." or "FAIL - ..." line per check and ends with
"N passed, M failed"; exits 0 iff nothing failed.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.numpy_helper
from PIL import Image

BUILD = os.environ.get("BUILD", "build")
TANDEM = os.environ.get("TANDEM", os.path.join(BUILD, "tandem"))
TEST_DATA = os.environ.get("TEST_DATA", "data")
ORT_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "ort_run.js")
RUN_TIMEOUT = int(os.environ.get("MODELS_RUN_TIMEOUT", "300"))

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
}

passed = 0
failed = 0


def ok(msg):
    global passed
    passed += 1
    print(f"ok - {msg}", flush=True)


def fail(msg):
    global failed
    failed += 1
    print(f"FAIL - {msg}", flush=True)


class Model:
    """What the suite needs to know about a model file."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        m = onnx.load(path)
        init = {i.name for i in m.graph.initializer}
        inp = [i for i in m.graph.input if i.name not in init][0]
        tt = inp.type.tensor_type
        self.in_type = NP_TYPES[tt.elem_type]
        self.in_shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        self.dynamic_batch = self.in_shape[0] < 0
        self.in_shape[0] = 1
        out = m.graph.output[0]
        self.out_type = NP_TYPES[out.type.tensor_type.elem_type]
        self.int8 = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)
        self.arch = self.name.startswith(("mobilenetv2", "resnet50"))
        self.step = self.quant_step(m, out.name) if self.int8 else None
        # Image layout: NCHW float or NHWC uint8.
        self.nhwc = self.in_type == np.uint8 and len(self.in_shape) == 4 and self.in_shape[3] == 3
        self.nchw = self.in_type == np.float32 and len(self.in_shape) == 4 and self.in_shape[1] == 3

    def quant_step(self, m, out_name):
        if self.out_type != np.float32:
            return 1.0
        consts = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
        for n in m.graph.node:
            if n.op_type == "Constant":
                consts[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
        for n in m.graph.node:
            if out_name in n.output and n.op_type == "DequantizeLinear":
                return float(np.asarray(consts[n.input[1]]).reshape(-1)[0])
        raise RuntimeError(f"{self.name}: float output not produced by DequantizeLinear")

    def image_input(self, path):
        img = Image.open(path).convert("RGB")
        if self.nchw:
            h, w = self.in_shape[2], self.in_shape[3]
            a = np.asarray(img.resize((w, h), Image.BILINEAR), np.float32) / 255.0
            a = (a.transpose(2, 0, 1) - MEAN) / STD
            return a[None].astype(np.float32)
        h, w = self.in_shape[1], self.in_shape[2]
        return np.asarray(img.resize((w, h), Image.BILINEAR), np.uint8)[None]

    def random_input(self, seed, batch=1):
        rng = np.random.default_rng(seed)
        shape = [batch] + self.in_shape[1:]
        if self.in_type == np.uint8:
            return rng.integers(0, 256, size=shape, dtype=np.uint8)
        return rng.standard_normal(shape).astype(np.float32)


def run(cmd):
    """Runs cmd; returns (ok, last line of its stderr)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {RUN_TIMEOUT}s"
    lines = (p.stderr or p.stdout or "").strip().splitlines()
    return p.returncode == 0, f"exit {p.returncode}: {lines[-1] if lines else ''}"


def compare(model, label, got, ref, bf16):
    if got.size != ref.size:
        fail(f"{label}: {got.size} outputs, ORT has {ref.size}")
        return
    g = got.astype(np.float64).reshape(-1)
    r = ref.astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(g)):
        fail(f"{label}: non-finite outputs")
        return
    if bf16:
        cos = float(np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r) + 1e-30))
        (ok if cos >= 0.999 else fail)(f"{label}: cosine {cos:.6f} (>= 0.999)")
        return
    if model.int8:
        step = model.step
        bad = int(np.sum(np.abs(g - r) > step * (1 + 1e-3)))
        frac = bad / g.size
        top = ""
        good = frac <= 0.01
        if "image" in label:
            tg, tr = int(np.argmax(g)), int(np.argmax(r))
            same = tg == tr or r[tg] == r[tr]
            top = f", top-1 tandem {tg} ORT {tr}{' (tie)' if same and tg != tr else ''}"
            good = good and same
        (ok if good else fail)(
            f"{label}: {bad}/{g.size} outputs ({100 * frac:.2f} %) beyond one step {step:g} (<= 1 %){top}"
        )
        return
    err = float(np.max(np.abs(g - r)))
    tol = 1e-4 * float(np.max(np.abs(r)))
    (ok if err <= tol else fail)(f"{label}: max err {err:.3g} (<= {tol:.3g})")


def tandem_features():
    try:
        p = subprocess.run([TANDEM, "run-model", "--help"], capture_output=True, text=True, timeout=30)
        text = p.stdout + p.stderr
    except OSError:
        return set()
    return {f for f in ("--backend", "--batch", "--precision") if f in text}


def images():
    files = []
    for ext in ("png", "jpg", "jpeg"):
        files += glob.glob(os.path.join(TEST_DATA, "images", f"*.{ext}"))
    return sorted(files)


def check_model(model, tmp, features):
    # Inputs: (label, array).
    inputs = [("random seed 0", model.random_input(0))]
    if model.int8:
        inputs.append(("random seed 1", model.random_input(1)))
    if model.arch or model.int8:
        if model.nchw or model.nhwc:
            inputs += [(f"image {os.path.basename(p)}", model.image_input(p)) for p in images()]
    batch2 = None
    if model.dynamic_batch and "--batch" in features:
        batch2 = ("random batch 2", model.random_input(7, batch=2))
    paths = {}
    pairs = []
    for i, (label, arr) in enumerate(inputs + ([batch2] if batch2 else [])):
        ip, op = os.path.join(tmp, f"{model.name}-{i}.in"), os.path.join(tmp, f"{model.name}-{i}.ort")
        arr.tofile(ip)
        paths[label] = (ip, op)
        pairs += [ip, op]
    good, why = run(["node", ORT_RUN, model.path] + pairs)
    if not good:
        fail(f"{model.name}: ONNX Runtime failed ({why})")
        return

    # Variants: (name, extra args, which inputs, bf16?)
    random_only = [l for l, _ in inputs if l.startswith("random")]
    everything = [l for l, _ in inputs]
    variants = [("threads=1", ["--threads", "1"], everything, False),
                ("threads=2", ["--threads", "2"], random_only, False)]
    if "--backend" in features:
        variants.append(("backend=ref", ["--backend", "ref", "--threads", "1"],
                         everything[:3] if model.int8 else random_only, False))
    if model.arch and not model.int8:
        variants.append(("bf16", ["--precision", "bf16", "--threads", "1"], everything, True))
    if batch2:
        variants.append(("batch=2", ["--batch", "2", "--threads", "1"], [batch2[0]], False))

    for vname, args, labels, bf16 in variants:
        for label in labels:
            ip, op = paths[label]
            out = op[:-4] + ".tandem"
            check = f"{model.name} {label} {vname}"
            if os.path.exists(out):
                os.unlink(out)
            good, why = run([TANDEM, "run-model", "--model", model.path, "--input", ip, "--output", out] + args)
            if not good:
                fail(f"{check}: tandem run-model failed ({why})")
                continue
            got = np.fromfile(out, model.out_type)
            ref = np.fromfile(op, model.out_type)
            compare(model, check, got, ref, bf16)


def main():
    models_dir = os.path.join(BUILD, "test-models")
    if not os.path.isdir(models_dir):
        models_dir = os.path.join("build", "test-models")
    files = sorted(glob.glob(os.path.join(models_dir, "*.onnx")))
    files += sorted(glob.glob(os.path.join(TEST_DATA, "models", "st-int8", "*.onnx")))
    only = os.environ.get("MODELS_FILTER", "")
    files = [f for f in files if only in os.path.basename(f)]
    if not glob.glob(os.path.join(models_dir, "*.onnx")):
        fail(f"no test models in {models_dir} (run `make test-models`)")
    if not os.access(TANDEM, os.X_OK):
        fail(f"{TANDEM} is missing (build it with `make`)")
    else:
        features = tandem_features()
        if "--batch" not in features:
            print("# run-model takes batch 1 only (no --batch): batch > 1 not checked", flush=True)
        if "--backend" not in features:
            print("# run-model has no --backend: the reference backend is not checked", flush=True)
        with tempfile.TemporaryDirectory(prefix="tandem-models-") as tmp:
            for f in files:
                try:
                    model = Model(f)
                except Exception as e:  # a model the suite cannot describe is a failure, not a skip
                    fail(f"{os.path.basename(f)}: cannot read it ({e})")
                    continue
                check_model(model, tmp, features)
                for leftover in glob.glob(os.path.join(tmp, "*")):
                    os.unlink(leftover)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
