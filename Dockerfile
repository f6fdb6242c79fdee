# syntax=docker/dockerfile:1
# Herald's image: `herald` (the node and its operator CLI, the entry point) and
# `herald-mock-push` (mock APNs and FCM, for demos and tests), on a distroless non-root
# runtime. Dependencies are built in their own layer (cargo-chef), so a change to Herald's
# code rebuilds only Herald.
#
#   docker build -t herald .
#   docker run --rm -v "$PWD/herald.toml:/etc/herald/herald.toml:ro" -p 8080:8080 herald

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
        -p herald-broker -p herald-workers --features herald-workers/mock
COPY . .
RUN cargo build --release --locked -p herald-broker --bin herald \
    && cargo build --release --locked -p herald-workers --features mock --bin herald-mock-push

# glibc 2.36, as the builder's Debian 12; user 65532 (nonroot), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/herald /usr/local/bin/herald
COPY --from=builder /src/target/release/herald-mock-push /usr/local/bin/herald-mock-push
USER 65532:65532
# Gateway (Exchange), gRPC (API and peers), admin (probes and metrics).
EXPOSE 8080 50051 9090
# The admin listener must be reachable on loopback (admin.listen 0.0.0.0:9090 or
# 127.0.0.1:9090).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/herald", "probe", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/usr/local/bin/herald"]
CMD ["serve", "--config", "/etc/herald/herald.toml"]
