# Stand-in for gcr.io/distroless/cc-debian12:nonroot, the base of tagwarden's runtime
# image: the Debian base (glibc, libgcc) with CA certificates and the nonroot user 65532.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /home/nonroot \
        --shell /usr/sbin/nologin nonroot
USER 65532:65532
