# The AppLearner image: `applearner` on a slim runtime, with the shipped configs, data and
# models under /app (the quickstart runs in a pod as it does on a laptop).
#
#   docker build -t registry.example.com/applearner:0.1.0 .
#   docker build -t registry.example.com/applearner:0.1.0-cuda \
#     --build-arg FEATURES=cuda --build-arg RUNTIME=nvidia/cuda:12.8.1-runtime-ubuntu24.04 .
#
# The CUDA variant needs no CUDA to build: burn-cuda loads libcuda (from the node's driver)
# and NVRTC (in the CUDA runtime image) when it starts. Both variants build on bookworm,
# whose glibc is older than either runtime's.

ARG RUNTIME=debian:bookworm-slim

FROM rust:1.95-slim-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY . .
# The release build CI's test build mirrors (`cargo test --features cuda` builds the same
# crates); --locked: exactly the dependencies in Cargo.lock.
RUN cargo build --release --locked --features "${FEATURES}" --bin applearner \
 && strip target/release/applearner

FROM ${RUNTIME}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/applearner /usr/local/bin/applearner
COPY configs /app/configs
COPY data /app/data
COPY trained_models /app/trained_models
WORKDIR /app
# Any non-root user: the image writes only to its store (object storage in a cluster).
USER 65532:65532
ENTRYPOINT ["applearner"]
CMD ["--help"]
