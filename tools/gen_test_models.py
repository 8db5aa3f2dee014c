#!/usr/bin/python3
"""Generates the test models into OUTDIR (default build/test-models).

Run with Debian's /usr/bin/python3 (torch, torchvision 0.14, onnx). Weights
are random with a fixed seed: the files have the real architectures of
MobileNetV2 and ResNet50, so they exercise the engine like the ONNX Model Zoo
files do, but their labels mean nothing.

  mobilenetv2_op13.onnx, resnet50_op13.onnx       opset 13, constant folding (BN folded)
  mobilenetv2_op11_bn.onnx, resnet50_op11_bn.onnx opset 11, BatchNormalization kept
  mobilenetv2_op9_bn.onnx, resnet50_op9_bn.onnx   opset 9, BatchNormalization kept
  mobilenetv2_zoo7.onnx   opset 9 like the Model Zoo's mobilenetv2-7: Clip with
                          min/max attributes, Reshape fed by Shape->Gather->
                          Unsqueeze->Concat
  ops_*.onnx              one small model per operator family, for per-op
                          conformance against ONNX Runtime

Every model has input "input" and output "output" with a dynamic batch axis.
Files are written atomically (temp file + rename) and existing files are kept,
so the directory works as a cache.
"""
import os
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import onnx


class ZooMobileNetV2(nn.Module):
    """MobileNetV2 whose head flattens with x.reshape(x.shape[0], -1), which
    exports as Shape->Gather->Unsqueeze->Concat->Reshape, as in mobilenetv2-7."""

    def __init__(self):
        super().__init__()
        self.net = torchvision.models.mobilenet_v2()

    def forward(self, x):
        x = self.net.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = x.reshape(x.shape[0], -1)
        return self.net.classifier(x)


class OpConv(nn.Module):
    """Grouped, strided, dilated, padded convolutions with and without bias."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2)
        self.b = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16, bias=False)
        self.c = nn.Conv2d(16, 12, (1, 3), stride=(1, 2), padding=(0, 1))
        self.d = nn.Conv2d(12, 6, 5, padding=0)

    def forward(self, x):
        return self.d(torch.relu(self.c(F.relu6(self.b(self.a(x))))))


class OpPool(nn.Module):
    def forward(self, x):
        a = F.max_pool2d(x, 3, stride=2, padding=1)
        b = F.avg_pool2d(a, 2, stride=2)
        c = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        d = F.max_pool2d(c, 2, stride=2, ceil_mode=True)
        return torch.cat([b, d], dim=1)


class OpGlobalPool(nn.Module):
    def forward(self, x):
        return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], dim=1)


class OpGemm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(torch.sigmoid(self.fc1(torch.flatten(x, 1))))


class OpMatMul(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.w = nn.Parameter(torch.randn(16, 8))

    def forward(self, x):
        return torch.tanh(torch.matmul(x, self.w)) * 0.5 - 0.25


class OpSoftmax(nn.Module):
    def forward(self, x):
        return torch.softmax(x * 3.0, dim=-1)


class OpEltwise(nn.Module):
    def forward(self, x):
        y = torch.clamp(x, -1.0, 2.0) + torch.abs(x) * 0.5
        z = torch.max(y, torch.sigmoid(x)) - torch.min(x, torch.tanh(y))
        w = F.leaky_relu(z, 0.1) / (torch.exp(-torch.abs(x)) + 1.0)
        return F.hardsigmoid(w) + torch.sqrt(torch.abs(w) + 1e-3) - F.hardswish(-w)


class OpBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.bn2 = nn.BatchNorm2d(8)
        with torch.no_grad():
            for bn in (self.bn, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.bn2(y) + y


class OpShape(nn.Module):
    """Transpose, Reshape with a computed shape, Squeeze/Unsqueeze, Concat,
    Slice. (No F.pad: torch exports its pads through ConstantOfShape, which
    the engine does not run.)"""

    def forward(self, x):
        t = x.permute(0, 2, 3, 1)
        r = t.reshape(t.shape[0], -1, 4)
        s = r[:, 1:-1:2, :].unsqueeze(1).squeeze(1)
        return torch.cat([s, s * 2.0], dim=2)


# name -> (module factory, input shape, opset, export options)
OP_MODELS = {
    "ops_conv": (OpConv, (1, 8, 17, 19), 13, {}),
    "ops_pool": (OpPool, (1, 4, 16, 16), 13, {}),
    "ops_globalpool": (OpGlobalPool, (1, 6, 7, 5), 13, {}),
    "ops_gemm": (OpGemm, (1, 4, 4, 4), 13, {}),
    "ops_matmul": (OpMatMul, (1, 5, 16), 13, {}),
    "ops_softmax": (OpSoftmax, (1, 10), 13, {}),
    "ops_softmax_op11": (OpSoftmax, (1, 10), 11, {}),
    "ops_eltwise": (OpEltwise, (1, 3, 8, 8), 13, {}),
    "ops_batchnorm": (
        OpBatchNorm,
        (1, 3, 9, 9),
        11,
        {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False},
    ),
    "ops_shape": (OpShape, (1, 4, 6, 6), 13, {}),
}


def perturb_batchnorm(model):
    """torchvision initialises BatchNorm to the identity (mean 0, var 1,
    weight 1, bias 0), which would let a broken BN implementation or BN->Conv
    folding pass unnoticed: give every BN mild random statistics instead."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.25)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)


def export(model, shape, path, opset, **kw):
    """Exports to a temp file in the same directory, checks it, renames."""
    model.eval()
    x = torch.randn(*shape)
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=d)
    os.close(fd)
    try:
        torch.onnx.export(
            model,
            x,
            tmp,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            **kw,
        )
        onnx.checker.check_model(onnx.load(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/test-models"
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    keep_bn = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}
    jobs = []
    for arch in ("mobilenetv2", "resnet50"):
        ctor = torchvision.models.mobilenet_v2 if arch == "mobilenetv2" else torchvision.models.resnet50
        jobs.append((f"{arch}_op13", ctor, (1, 3, 224, 224), 13, {}))
        jobs.append((f"{arch}_op11_bn", ctor, (1, 3, 224, 224), 11, keep_bn))
        jobs.append((f"{arch}_op9_bn", ctor, (1, 3, 224, 224), 9, keep_bn))
    jobs.append(("mobilenetv2_zoo7", ZooMobileNetV2, (1, 3, 224, 224), 9, keep_bn))
    for name, (ctor, shape, opset, kw) in OP_MODELS.items():
        jobs.append((name, ctor, shape, opset, kw))
    for name, ctor, shape, opset, kw in jobs:
        path = os.path.join(out, name + ".onnx")
        if os.path.exists(path):
            continue
        # Same seed before each model: a file's weights do not depend on
        # which other files were already cached.
        torch.manual_seed(0)
        model = ctor()
        perturb_batchnorm(model)
        with torch.no_grad():
            export(model, shape, path, opset, **kw)
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
