# tagwarden's runtime image around a binary built on the host (`cargo build --release
# --locked --bin tagwarden`), for machines without a Rust image: the last stage of the
# repository's Dockerfile, with the binary copied in instead of built. Its context holds
# target/release/tagwarden and config/ (scripts/check-compose-up.sh stages them).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${RUNTIME_IMAGE}
COPY target/release/tagwarden /usr/local/bin/tagwarden
COPY config/ /etc/tagwarden/
USER 65532:65532
EXPOSE 5000 5001
ENTRYPOINT ["/usr/local/bin/tagwarden"]
CMD ["serve", "--config", "/etc/tagwarden/tagwarden.toml"]
