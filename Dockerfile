# syntax=docker/dockerfile:1
# secops: a static binary on distroless/static, non-root, no shell.
# Reproduce the build without Docker: scripts/build-static (same cargo flags).

FROM rust:1.95.0-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --locked --release --target x86_64-unknown-linux-musl --bin secops

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="secops" \
      org.opencontainers.image.description="Hands Kubernetes bootstrap Secrets over to Vault exactly once" \
      org.opencontainers.image.source="https://github.com/secops-dev/secops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/secops /secops
USER 65532:65532
ENTRYPOINT ["/secops"]
