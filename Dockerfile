# tagwarden container image.
#
#   docker build -t tagwarden .
#   docker run -p 5000:5000 \
#     -e TAGWARDEN_UPSTREAM__URL=http://registry:5000 \
#     -e TAGWARDEN_DATABASE__URL=postgres://tagwarden:secret@db:5432/tagwarden \
#     tagwarden
#
# The default configuration is config/tagwarden.toml, at /etc/tagwarden/tagwarden.toml;
# mount your own there or override keys with TAGWARDEN_<SECTION>__<KEY>. Its admin
# listener is on the container's loopback: set TAGWARDEN_ADMIN__LISTEN=0.0.0.0:5001 to
# publish /healthz, /readyz and /metrics (and publish that port on a private address).

# The images can be swapped for mirrors or local stand-ins (scripts/check-compose-up.sh
# builds them from Debian packages where Docker Hub is out of reach, and wraps a
# host-built binary with scripts/compose-standins/tagwarden.Dockerfile).
ARG RUST_VERSION=1
ARG BUILD_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Compile-time checked queries, if any, read .sqlx/ instead of a live database.
ENV SQLX_OFFLINE=true

# Dependencies first, against placeholder sources: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin tagwarden \
    && rm -rf src target/release/.fingerprint/tagwarden-* \
        target/release/deps/tagwarden-* target/release/deps/libtagwarden-* \
        target/release/tagwarden*

# The real sources. migrations/ is embedded in the binary at compile time.
COPY . .
RUN cargo build --release --locked --bin tagwarden \
    && install -D -m 0755 target/release/tagwarden /out/tagwarden

# glibc, libgcc, CA certificates, a nonroot user (65532), no shell.
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/tagwarden /usr/local/bin/tagwarden
COPY config/ /etc/tagwarden/
USER 65532:65532
# 5000: registry clients. 5001: /healthz, /readyz, /metrics.
EXPOSE 5000 5001
ENTRYPOINT ["/usr/local/bin/tagwarden"]
CMD ["serve", "--config", "/etc/tagwarden/tagwarden.toml"]
