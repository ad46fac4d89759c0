# Stand-in for registry:2 in docker-compose.yml: Debian's docker-registry (CNCF
# distribution 2.8) on :5000 with its storage in /var/lib/registry. Configuration
# comes from registry-config.yml and REGISTRY_* variables (e.g.
# REGISTRY_STORAGE_DELETE_ENABLED), as in the upstream image; wget is for the healthcheck.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry wget \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY registry-config.yml /etc/docker/registry/config.yml
VOLUME /var/lib/registry
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
