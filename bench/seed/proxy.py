"""The seed's proxy, built as its spec says: FastAPI + uvicorn, the fast
model (MobileNetV2) run at once on each POST /predict, the job registered in
Redis by a BackgroundTask (SET image:{id} EX 3600, LPUSH queue:jobs), and
GET /job/{id} reading result:{id}.

A benchmark peer for tandem (bench/seed.sh), not part of the product.
Environment: PORT (8000), REDIS_HOST, REDIS_PORT, SYNC_MODEL_PATH,
QUEUE_NAME, LABELS_PATH, ENGINE_THREADS (ORT intra-op threads per inference,
1 as in tandem; 0 = ORT's default, one per core). FastAPI runs the sync
handler in its thread pool, so requests are served concurrently: ORT's Run
releases the GIL (a ctypes call), and so do PIL's decode and resize.
"""
import base64
import binascii
import logging
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import BackgroundTasks, FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

import common  # noqa: E402

logger = logging.getLogger("proxy")
SYNC_MODEL_PATH = os.environ.get("SYNC_MODEL_PATH", "/models/mobilenet_v2.onnx")
SAMPLE = os.path.join(common.ROOT, "data", "sample.jpg")

app = FastAPI()
classifier = common.Classifier(SYNC_MODEL_PATH, int(os.environ.get("ENGINE_THREADS", "1")))
store = redis.Redis(host=common.REDIS_HOST, port=common.REDIS_PORT, retry_on_timeout=True)


class PredictRequest(BaseModel):
    image_data: str


def register_job(job_id, image_data):
    store.set("image:" + job_id, image_data, ex=common.TTL)
    store.lpush(common.QUEUE_NAME, job_id)


def predict_b64(image_data, background_tasks):
    job_id = uuid.uuid4().hex[:6]
    try:
        data = base64.b64decode(image_data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status_code=400, detail="image_data is not valid base64")
    try:
        result = classifier.predict(data)
    except (OSError, ValueError) as e:
        raise HTTPException(status_code=400, detail="not a readable image: %s" % e)
    logger.info("POST /predict - job_id: %s", job_id)
    logger.info("Sync prediction: %s", result)
    background_tasks.add_task(register_job, job_id, image_data)
    return {"job_id": job_id, "result_sync": result}


@app.get("/health")
def health():
    return {"health": "ok"}


@app.get("/metadata")
def metadata():
    return {
        "data_type": "str",
        "data_structure": "(1,1)",
        "data_sample": "base64 encoded image file",
        "prediction_type": "str",
        "prediction_structure": "(1,1)",
        "prediction_sample": "Persian cat",
    }


@app.post("/predict")
def predict(req: PredictRequest, background_tasks: BackgroundTasks):
    return predict_b64(req.image_data, background_tasks)


@app.get("/predict/test")
def predict_test(background_tasks: BackgroundTasks):
    with open(SAMPLE, "rb") as f:
        return predict_b64(base64.b64encode(f.read()).decode(), background_tasks)


@app.get("/job/{job_id}")
def job(job_id: str):
    result = store.get("result:" + job_id)
    if result is None:
        if not store.exists("image:" + job_id):
            raise HTTPException(status_code=404, detail="job not found")
        return {job_id: {"prediction": ""}}
    return {job_id: {"prediction": result.decode()}}


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING").upper())
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")),
                log_level="warning", access_log=False)
