//! Building and running the service from a [`Config`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::admin::{self, AdminState};
use crate::api::{ApiState, Tokens};
use crate::audit::Audit;
use crate::config::Config;
use crate::enforce::{Guard, ReadBounds, UpstreamAuth};
use crate::gateway::Gateway;
use crate::ledger::StatementBounds;
use crate::ledger::{Ledger, LedgerReader};
use crate::policy::live::LivePolicy;
use crate::policy::Policy;
use crate::proxy::{Forwarder, Upstream};
use crate::reload::{self, ConfigSource, Reloader};
use crate::server;
use crate::telemetry::Metrics;
use crate::ui::{Sessions, UiState};

/// Connect to the ledger and apply migrations, retrying while the database is not up
/// yet (containers start in any order), for at most `database.startup_timeout`.
///
/// Migrations run on a connection of their own, without the write pool's statement
/// timeout: one may rightly take longer than any manifest write.
pub async fn open_ledger(config: &Config) -> anyhow::Result<Ledger> {
    let url = config.database.url.expose();
    let migrator = Ledger::connect_lazy(url, 1, config.database.acquire_timeout)?;
    let ledger = Ledger::connect_lazy_bounded(
        url,
        config.database.max_connections,
        config.database.acquire_timeout,
        Some(StatementBounds {
            lock_timeout: config.database.lock_timeout,
            statement_timeout: config.database.statement_timeout,
        }),
    )?;
    let deadline = Instant::now() + config.database.startup_timeout;
    let mut delay = Duration::from_millis(200);
    loop {
        match migrator.migrate().await {
            Ok(()) => return Ok(ledger),
            Err(e) if Instant::now() + delay < deadline => {
                tracing::warn!(error = %crate::oci::error::chain(&e), "database not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e).context("database: could not apply migrations"),
        }
    }
}

/// Build the service and serve until SIGTERM or Ctrl-C, then drain. `source` is where
/// `config` came from: `SIGHUP` reads it again for a new policy (see [`crate::reload`]).
pub async fn run(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    Application::build(config, source)
        .await?
        .run_until(server::shutdown_signal())
        .await
}

/// The service, built: the ledger migrated, both listeners bound and every background
/// task (integrator, reload, notifications, pull log, reconcile, retention) started, but
/// no request served until [`Application::run_until`].
///
/// Building and running are apart so that a caller learns the bound addresses first:
/// tests configure port 0 and run the whole service in their own process.
pub struct Application {
    proxy: TcpListener,
    admin: TcpListener,
    client_options: server::Options,
    admin_options: server::Options,
    gateway: Arc<Gateway>,
    admin_app: axum::Router,
    serving: Serving,
    tasks: Background,
}

/// What the "serving" log line names besides the listeners: logged by `run_until`, once
/// nothing can fail any more.
struct Serving {
    upstream: String,
    policy: String,
}

/// Tasks that live as long as the service and are stopped after the listeners drain.
struct Background {
    reloader: JoinHandle<()>,
    reconcile: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
    pulls_writer: Option<JoinHandle<()>>,
}

impl Application {
    /// Everything that can fail at startup fails here, before anything is served.
    pub async fn build(config: Config, source: ConfigSource) -> anyhow::Result<Application> {
        let metrics = Metrics::install();
        let policy = LivePolicy::new(Policy::from_config(&config.policy)?);
        let upstream = Upstream::new(&config.upstream)?;
        let ledger = open_ledger(&config).await?;
        let forwarder = Forwarder::new(upstream.clone(), metrics.clone());
        let guard = Guard::new(
            policy.clone(),
            ledger.clone(),
            forwarder.clone(),
            metrics.clone(),
            config.limits.max_manifest_bytes,
            ReadBounds::new(
                config.limits.manifest_read_timeout,
                config.limits.manifest_buffer_budget,
            ),
            config.upstream.authorization(),
        )
        .with_upstream_auth(UpstreamAuth::new(config.upstream.authenticates))
        .with_ledger_complete(config.enforce.ledger_complete);
        if config.enforce.ledger_complete {
            // Only a warning: the writes read the marker themselves, and fail closed.
            match ledger.pending_writes_tracked().await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "[enforce] ledger_complete: {}",
                    crate::ledger::PENDING_WRITES_LOST
                ),
                Err(e) => {
                    tracing::warn!(error = %crate::oci::error::chain(&e), "could not read whether the ledger's pending writes are intact")
                }
            }
        }
        let log_gate = crate::tlog::anchor::Gate::default();
        let guard = guard.with_log_gate(log_gate.clone());
        let log_routes = if crate::tlog::integrator::start(&config, &ledger, &log_gate).await? {
            Some(admin::LogRoutes {
                state: crate::api::log::LogState {
                    pool: LedgerReader::connect_read_only(
                        config.database.url.expose(),
                        2,
                        config.database.acquire_timeout,
                        config.admin.query_timeout,
                    )?
                    .pool()
                    .clone(),
                },
                public: config.tlog.public,
            })
        } else {
            None
        };

        let tls = match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
        let admin_listener = TcpListener::bind(config.admin.listen)
            .await
            .with_context(|| format!("admin.listen: cannot listen on {}", config.admin.listen))?;
        let reloader = reload::start(
            Reloader::new(source, policy.clone(), config.clone(), metrics.clone())
                .with_history(ledger.clone()),
            config.reload.watch.then_some(config.reload.watch_interval),
        )
        .context("cannot install the SIGHUP handler for reloads")?;
        let serving = Serving {
            upstream: upstream.authority().to_string(),
            policy: policy.current().hash().to_string(),
        };

        crate::notify::start(&config, &metrics)?;
        let (pulls, pulls_writer) = crate::pulls::writer::start(&config, &forwarder, &metrics)?;
        let reconcile = if config.reconcile.enabled {
            let reconciler =
                crate::reconcile::Reconciler::new(&config, ledger.clone(), guard.clone())?;
            Some(crate::reconcile::background::start(
                reconciler,
                config.reconcile.interval,
                config.reconcile.repair,
                metrics.clone(),
            ))
        } else {
            None
        };
        let retention =
            crate::retention::Retention::new(&config.retention, ledger.clone(), guard.clone())?;
        let retention_task = config
            .retention
            .interval
            .map(|interval| crate::retention::spawn(retention.clone(), interval));
        let gateway = Arc::new(Gateway {
            forwarder,
            guard: guard.clone(),
            metrics: metrics.clone(),
            server: config.server.clone(),
            pulls,
        });
        let audit = Audit::new(LedgerReader::connect_read_only(
            config.database.url.expose(),
            config.admin.max_connections,
            config.database.acquire_timeout,
            config.admin.query_timeout,
        )?);
        let tokens = Arc::new(Tokens::new(&config.admin.tokens));
        let admin_app = admin::router(
            AdminState {
                ledger: ledger.into(),
                upstream,
                metrics,
                policy,
            },
            ApiState {
                audit: audit.clone(),
                tokens: tokens.clone(),
                guard: guard.clone(),
                retention,
            },
            UiState {
                audit,
                sessions: Arc::new(Sessions::new(tokens)),
            },
            log_routes,
        );

        let client_options = server::Options {
            name: "client",
            tls,
            header_read_timeout: config.server.header_read_timeout,
            idle_timeout: config.server.idle_timeout,
            write_timeout: config.upstream.idle_timeout,
            grace: config.server.shutdown_grace,
            max_connections: config.server.max_connections,
            h2_max_concurrent_streams: config.server.h2_max_concurrent_streams,
        };
        // The admin listener gets the same timeouts and its own connection cap, so neither
        // listener can take the connections the other needs.
        let admin_options = server::Options {
            name: "admin",
            tls: None,
            max_connections: config.admin.max_open_connections,
            ..client_options.clone()
        };

        Ok(Application {
            proxy: listener,
            admin: admin_listener,
            client_options,
            admin_options,
            gateway,
            admin_app,
            serving,
            tasks: Background {
                reloader,
                reconcile,
                retention: retention_task,
                pulls_writer,
            },
        })
    }

    /// Where the client listener (the registry API) is bound.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where the admin listener (health, metrics, audit API and pages) is bound.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve both listeners until `shutdown` resolves, then stop accepting, give
    /// in-flight requests `server.shutdown_grace`, stop the background tasks and flush
    /// the pull log.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            proxy,
            admin,
            client_options,
            admin_options,
            gateway,
            admin_app,
            serving,
            tasks,
        } = self;
        tracing::info!(
            listen = %proxy.local_addr()?,
            admin = %admin.local_addr()?,
            upstream = serving.upstream,
            tls = client_options.tls.is_some(),
            policy = serving.policy,
            "tagwarden is serving"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin_task = tokio::spawn({
            let mut stop = stop_rx.clone();
            let handler = move |req: hyper::Request<hyper::body::Incoming>, _conn| {
                let app = admin_app.clone();
                async move {
                    match app.oneshot(req.map(axum::body::Body::new)).await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    }
                }
            };
            async move {
                server::serve(admin, admin_options, handler, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            }
        });

        let handler = move |req, conn| gateway.clone().handle(req, conn);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        server::serve(proxy, client_options, handler, shutdown).await;
        let _ = admin_task.await;
        for task in [tasks.reconcile, tasks.retention].into_iter().flatten() {
            task.abort();
        }
        tasks.reloader.abort();
        crate::pulls::writer::drain(tasks.pulls_writer).await;
        tracing::info!("stopped");
        Ok(())
    }
}
