# syntax=docker/dockerfile:1
# secops's container image: one static binary on a minimal base, user 65532, no shell.
# The one Dockerfile of the project: the release (.github/workflows/release.yml) and the local
# image test (scripts/test-image) both build it; they differ only in two build arguments.
#   BASE_IMAGE  the runtime base. Default: distroless/static (CA bundle, passwd with nonroot
#               65532, no shell). scripts/test-image passes a base it assembles offline from
#               scratch with the same parts, since no registry is reachable on its machines.
#   BINARY      the prebuilt static secops, a path in the build context: the release passes
#               the binary it also publishes (dist/secops-linux-<arch>, built by
#               scripts/build-static), so the image holds exactly the checksummed artifact;
#               the default picks the one of the platform being built (TARGETARCH).
# No build stage: a Rust builder image would need a registry, and the binary is built once,
# by scripts/build-static, for the image and for the release downloads alike.
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${BASE_IMAGE}
# Set by the builder for each platform (docker buildx, buildah): amd64, arm64.
ARG TARGETARCH
ARG BINARY=dist/secops-linux-${TARGETARCH}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="secops" \
      org.opencontainers.image.description="Hands Kubernetes bootstrap Secrets over to Vault exactly once" \
      org.opencontainers.image.source="https://github.com/secops-dev/secops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --chmod=0555 ${BINARY} /secops
USER 65532:65532
ENTRYPOINT ["/secops"]
