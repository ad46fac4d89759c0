# Stand-in for postgres:16 in docker-compose.yml: Debian's PostgreSQL 15 behind an
# entrypoint with the same contract (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, data
# in /var/lib/postgresql/data, initialised on first start, port 5432 on all addresses).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# No cluster at install time: the entrypoint creates the only one, in the volume.
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
