"""What the seed's proxy and worker share: settings, labels, preprocessing.

Preprocessing as the seed's spec states it for MobileNetV2 and ResNet50:
decode, RGB, resize to 224x224, x/255, ImageNet mean/std, NCHW, batch of 1.
The resize is PIL's BILINEAR (the torchvision convention, and what tandem
does). A model whose input is uint8 [N,H,W,3] (the real int8 models of
data/models/st-int8) gets the raw RGB pixels instead, so the peer can run
the same files as tandem.
"""
import io
import os

import numpy as np
from PIL import Image

import ort

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
REDIS_HOST = os.environ.get("REDIS_HOST", "redis")
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6379"))
QUEUE_NAME = os.environ.get("QUEUE_NAME", "queue:jobs")
LABELS_PATH = os.environ.get("LABELS_PATH", os.path.join(ROOT, "data", "imagenet_labels.txt"))
TTL = 3600

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


def load_labels():
    with open(LABELS_PATH) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


class Classifier:
    def __init__(self, path, threads):
        self.session = ort.InferenceSession(path, intra_op_num_threads=threads)
        self.input = self.session.get_inputs()[0]
        self.labels = load_labels()
        shape = self.input.shape
        self.nhwc = self.input.type == "tensor(uint8)"
        self.h, self.w = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])

    def preprocess(self, data):
        img = Image.open(io.BytesIO(data)).convert("RGB").resize((self.w, self.h), Image.BILINEAR)
        if self.nhwc:
            return np.asarray(img, np.uint8)[None]
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        return ((x - MEAN) / STD)[None].astype(np.float32)

    def predict(self, data):
        out = self.session.run(None, {self.input.name: self.preprocess(data)})[0].reshape(-1)
        k = int(np.argmax(out))
        # 1001 classes: TensorFlow's leading "background".
        if len(out) == len(self.labels) + 1:
            k -= 1
        return self.labels[k] if 0 <= k < len(self.labels) else "class %d" % k
