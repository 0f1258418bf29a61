# infera container image: one static binary and the shipped models on an empty base.
#
#   DOCKER_BUILDKIT=1 docker build -t infera .
#   docker run --rm -p 8080:8080 infera
#
# Serve your own models by mounting a repository over /models (read-only is fine):
#   docker run --rm -p 8080:8080 -v "$PWD/my-models:/models:ro" infera
#
# Build with BuildKit (the default since Docker 23; `DOCKER_BUILDKIT=1` on 20.10): the cargo
# registry and target directory are cache mounts, so a rebuild after a source change reuses the
# compiled dependencies (tract takes ~13 minutes on 2 cores cold). No `# syntax=` line on purpose:
# the built-in Dockerfile frontend handles everything here, and the build works without pulling a
# frontend image. tests/deploy/run builds this file unchanged and checks the result.

# ---- build: a static x86_64 binary ------------------------------------------------------------
# Pinned by tag. Bump together with `rust-version` in Cargo.toml when needed (>= 1.91).
FROM rust:1.95-slim-bookworm AS builder

WORKDIR /src

# Only what the build reads (.dockerignore lets nothing else in): the manifest and lock file, the
# build script and the gRPC .proto it compiles (protoc comes from a crate), the library and binary
# sources, and the bench/test sources that Cargo.toml declares as targets
# (cargo refuses a manifest whose declared targets are missing, even when building only the bin).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY vendor ./vendor
COPY benches ./benches
COPY tests ./tests

# crt-static + an explicit --target gives a fully static glibc binary (build scripts and proc
# macros stay dynamic because they are built for the host), so the runtime stage needs no libc.
# Symbols are stripped (about 10 MB less); debug info is already off in the release profile.
# Whole-program (fat) LTO with one codegen unit drops the code no path reaches across crates
# (arrow/parquet, tonic, tract carry much of it): a smaller image, at the price of a longer
# final link. Only the image is built this way; `cargo build --release` stays fast.
# Generic x86-64 code: no target-cpu=native, the image must run on any x86-64 machine.
# Relative relocations packed as DT_RELR (binutils >= 2.38; glibc >= 2.36 applies them, in a
# static-pie binary too): about 3 MB of .rela.dyn entries become a few kB, and the binary stays
# position-independent, so address-space randomisation is kept.
ENV RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_TERM_COLOR=never \
    CARGO_NET_RETRY=5
RUN --mount=type=cache,id=infera-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=infera-cargo-target,target=/src/target \
    cargo build --release --locked --bin infera --target x86_64-unknown-linux-gnu \
    && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/infera /out/infera

# The shipped model repository (models/conformance and models/bench are excluded by
# .dockerignore). Load every version and compare it with its golden outputs before it ships.
COPY models /out/models
RUN /out/infera check /out/models

# ---- runtime: nothing but the binary and the models ---------------------------------------------
FROM scratch

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="infera" \
      org.opencontainers.image.description="A small, fast inference server for ONNX models on CPU" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch" \
      org.opencontainers.image.documentation="docs/deploy.md"

COPY --from=builder /out/infera /infera
COPY --from=builder /out/models /models

# Bind every interface inside the container; serve the baked-in repository unless a volume is
# mounted over /models (or INFERA_MODEL_REPOSITORY points elsewhere). Every other setting is an
# INFERA_* variable (README.md, "Command line"). The health check probes INFERA_PORT, so changing
# the port needs nothing else. Serving 0.0.0.0 needs API keys: mount a keys file and set
# INFERA_API_KEYS_FILE, or set INFERA_ALLOW_UNAUTHENTICATED=true behind an authenticating
# gateway; without either the server refuses to start (docs/security.md).
ENV INFERA_HOST=0.0.0.0 \
    INFERA_PORT=8080 \
    INFERA_GRPC_PORT=8081 \
    INFERA_MODEL_REPOSITORY=/models

# No shell, no package manager, no root: uid/gid 65532 ("nonroot" in distroless). The binary
# writes nothing to disk, so a read-only root filesystem works.
USER 65532:65532
# 8080: HTTP (REST, V2, V1, metrics, health). 8081: gRPC (Open Inference Protocol, gRPC health).
EXPOSE 8080 8081

# The binary probes /health/ready itself (scratch has no curl): healthy once every model is
# loaded and warmed up, unhealthy while draining after SIGTERM.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/infera", "healthcheck"]

# SIGTERM drains in-flight requests for INFERA_SHUTDOWN_GRACE_SECS (default 20) before exiting;
# docker stop waits 10 s by default, so use `docker stop -t 25` (or lower the grace period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/infera"]
CMD ["serve"]
