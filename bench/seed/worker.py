"""The seed's worker, built as its spec says: a ProcessPoolExecutor of
NUM_WORKERS processes, each with its own ResNet50 session and Redis
connection; the main process waits on the queue (BRPOP queue:jobs) and hands
each job id to the pool; a pool process reads image:{id}, runs the slow model
and stores SET result:{id} <label> EX 3600. The main process keeps at most
2 x NUM_WORKERS jobs in the pool: one running and one waiting per process, so
no process idles between jobs while the rest stay in Redis.

A benchmark peer for tandem (bench/seed.sh), not part of the product.
Environment: REDIS_HOST, REDIS_PORT, ASYNC_MODEL_PATH, NUM_WORKERS (2),
QUEUE_NAME, LABELS_PATH, ENGINE_THREADS (ORT intra-op threads per process, 1).
Prints "ready" once every pool process has loaded its model.
"""
import base64
import logging
import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402

import common  # noqa: E402

logger = logging.getLogger("worker")
ASYNC_MODEL_PATH = os.environ.get("ASYNC_MODEL_PATH", "/models/resnet50.onnx")
NUM_WORKERS = int(os.environ.get("NUM_WORKERS", "2"))
ENGINE_THREADS = int(os.environ.get("ENGINE_THREADS", "1"))

_classifier = None
_store = None


def init_process():
    global _classifier, _store
    _classifier = common.Classifier(ASYNC_MODEL_PATH, ENGINE_THREADS)
    _store = redis.Redis(host=common.REDIS_HOST, port=common.REDIS_PORT, retry_on_timeout=True)


def warm(_):
    return os.getpid()


def process_job(job_id):
    image = _store.get("image:" + job_id)
    if image is None:
        logger.warning("job %s: image expired or missing", job_id)
        return None
    logger.info("Processing job: %s", job_id)
    result = _classifier.predict(base64.b64decode(image))
    _store.set("result:" + job_id, result, ex=common.TTL)
    logger.info("Async prediction: %s", result)
    return result


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING").upper())
    store = redis.Redis(host=common.REDIS_HOST, port=common.REDIS_PORT, retry_on_timeout=True)
    slots = threading.Semaphore(2 * NUM_WORKERS)
    with ProcessPoolExecutor(max_workers=NUM_WORKERS, initializer=init_process) as pool:
        # Start every process (and load its model) before taking jobs.
        list(pool.map(warm, range(NUM_WORKERS * 4)))
        print("ready", flush=True)

        def done(fut):
            slots.release()
            if fut.exception() is not None:
                logger.error("job failed: %s", fut.exception())

        while True:
            slots.acquire()
            item = store.brpop(common.QUEUE_NAME, timeout=5)
            if item is None:
                slots.release()
                continue
            pool.submit(process_job, item[1].decode()).add_done_callback(done)


if __name__ == "__main__":
    main()
