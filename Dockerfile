# syntax=docker/dockerfile:1
# The one `brix` binary with the Kubernetes parts (`--features kubernetes`), for the Helm chart in
# deploy/helm/brix: `brix gateway --kubernetes`, `brix kubernetes controllers`, and `brix sim` for
# test fleets. Build from the repository root:
#   docker build -t brix:0.1.0 .
# Multi-stage: a Rust toolchain builds a release binary; the runtime image holds only that binary
# on distroless (glibc, CA certificates, no shell), running as the non-root user 65532.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# Only what the build reads (.dockerignore keeps the rest out of the context).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The cache mounts keep downloaded crates and the target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p brix --features kubernetes \
    && install -D -m 0755 target/release/brix /out/brix

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/brix /usr/local/bin/brix
USER 65532:65532
# 8888: the gateway (chart default); 8081: the controllers' /healthz and /readyz; 8000: `brix sim`.
EXPOSE 8888 8081 8000
ENTRYPOINT ["brix"]
