# tandem in containers: a build stage with the -dev packages, a runtime stage
# with the shared libraries only. Debian 12, like the machines it is built on.
# (No Docker engine was available where this was written: the file is
# checked by tests/suite_up.sh for structure only, the image was not built.)
#
#   docker build -t tandem .
#   docker compose up -d         # see docker-compose.yml

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config protobuf-c-compiler libprotobuf-c-dev libonnx-dev \
      libdnnl-dev libhiredis-dev libmicrohttpd-dev libjansson-dev libjpeg62-turbo-dev \
      libspng-dev libsodium-dev libcurl4-openssl-dev libssl-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" build/tandem

FROM debian:12 AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libprotobuf-c1 libdnnl2 libgomp1 libhiredis0.14 libmicrohttpd12 libjansson4 \
      libjpeg62-turbo libspng0 libsodium23 libcurl4 libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tandem \
 && mkdir -p /models && chown tandem /models
COPY --from=build /src/build/tandem /usr/local/bin/tandem
# The real int8 pair, for `tandem up` with no network (found beside the binary).
COPY --from=build /src/data/models/st-int8 /usr/local/share/tandem/models/st-int8
# The seed's paths and hosts: models in a volume at /models, Redis at "redis".
ENV MODEL_DIR=/models \
    SYNC_MODEL_PATH=/models/mobilenet_v2.onnx \
    ASYNC_MODEL_PATH=/models/resnet50.onnx \
    REDIS_HOST=redis \
    REDIS_PORT=6379 \
    QUEUE_NAME=queue:jobs
# A numeric user, so that Kubernetes can check runAsNonRoot against it.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["proxy"]
