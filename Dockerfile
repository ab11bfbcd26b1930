# syntax=docker/dockerfile:1
# Portcullis: build in the Rust image, run as a non-root user in a slim one.
#   docker build -t portcullis .
#   docker run -p 8080:8080 -v portcullis-data:/data portcullis
# tests/packaging.rs copies exactly what this stage copies into an empty directory and
# checks it builds there, so a Cargo target missing below fails `cargo test`.

FROM rust:1-bookworm AS build
# pingora builds a C library with cmake.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Every target Cargo.toml declares must be here, or the manifest does not load.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY upstreams upstreams
COPY benches benches
COPY bench/mint_tokens.rs bench/mint_tokens.rs
# The registry and target caches survive between builds; the binaries are copied out
# of the cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis --bin echo \
    && mkdir -p /out \
    && cp target/release/portcullis target/release/echo /out/

FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="An edge gateway on Pingora: every request authenticated and authorized before it reaches your service" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# CA roots: trusted issuers' JWKS and TLS upstreams are verified against them.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portcullis \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home portcullis \
    && mkdir -p /data /etc/portcullis \
    && chown 10001:10001 /data \
    && chmod 0700 /data
COPY --from=build /out/portcullis /out/echo /usr/local/bin/
COPY deploy/gateway.yaml /etc/portcullis/gateway.yaml
# The store, signing keys and anything else the gateway writes live here; the config
# above is read-only and names /data by absolute path.
VOLUME ["/data"]
WORKDIR /data
# A container's loopback is its own, so the admin listener (/metrics, /healthz, /readyz)
# listens on every address of the container. Publish 8080 only: keep 9090 private.
ENV PORTCULLIS_ADMIN_LISTEN=0.0.0.0:9090
EXPOSE 8080 9090
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/portcullis", "health", "-c", "/etc/portcullis/gateway.yaml"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "-c", "/etc/portcullis/gateway.yaml"]
