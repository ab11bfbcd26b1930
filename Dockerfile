# Multi-stage build: compile in the Rust image, run as a non-root user in a slim one.
FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY upstreams upstreams
COPY migrations migrations
RUN cargo build --release --locked --bin portcullis --bin echo

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/portcullis --create-home portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY --from=build /src/target/release/echo /usr/local/bin/echo
COPY gateway.yaml /etc/portcullis/gateway.yaml
USER portcullis
WORKDIR /var/lib/portcullis
# The config's relative paths (store, keys) resolve beside it; mount a volume
# at /etc/portcullis/data to keep users and revocations across containers.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run", "-c", "/etc/portcullis/gateway.yaml"]
