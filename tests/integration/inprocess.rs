//! tagwarden run in the test's own process ([`Application`]), on port 0, against a real
//! registry or a wiremock one, with a fresh Postgres ledger: the whole service, from
//! listener to ledger, without starting the binary.

use std::time::Duration;

use reqwest::StatusCode;
use tagwarden::reload::ConfigSource;
use tagwarden::startup::Application;
use tokio::sync::oneshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::api::{put_manifest, upload_blob};
use crate::support::database::Database;
use crate::support::http::{client, expect_oci_error, header};
use crate::support::oci::Image;
use crate::support::registry::Registry;

/// A running in-process tagwarden; dropping it does not stop it, [`Running::stop`] does.
struct Running {
    proxy: String,
    admin: String,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
    _config: tempfile::NamedTempFile,
}

impl Running {
    async fn start(upstream: &str, database: &str) -> Running {
        let file = tempfile::NamedTempFile::new().expect("config file");
        std::fs::write(
            file.path(),
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
[database]
url = "{database}"
"#
            ),
        )
        .expect("write config");
        let source = ConfigSource {
            file: Some(file.path().to_owned()),
            ..ConfigSource::default()
        };
        let config = source.load().expect("a valid configuration");
        let app = Application::build(config, source)
            .await
            .expect("tagwarden builds");
        let (proxy, admin) = (app.proxy_addr(), app.admin_addr());
        assert_ne!(proxy.port(), 0, "port 0 is resolved before serving");
        let (stop, stopped) = oneshot::channel();
        let served = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Running {
            proxy: format!("http://{proxy}"),
            admin: format!("http://{admin}"),
            stop,
            served,
            _config: file,
        }
    }

    /// Ask for shutdown and wait for the drain; the service must end cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.served)
            .await
            .expect("tagwarden drains within 30 s")
            .expect("the serving task does not panic")
            .expect("tagwarden stops without an error");
    }
}

#[tokio::test]
async fn in_process_the_service_records_a_release_and_refuses_to_repoint_it() {
    let registry = Registry::start().await;
    let db = Database::fresh();
    let tw = Running::start(&registry.url(), db.url()).await;

    let health = client()
        .get(format!("{}/healthz", tw.admin))
        .send()
        .await
        .expect("admin listener answers");
    assert_eq!(health.status(), StatusCode::OK);

    let (first, second) = (Image::random(&[256]), Image::random(&[256]));
    for image in [&first, &second] {
        for blob in image.blobs() {
            upload_blob(&tw.proxy, "team/app", blob).await;
        }
    }
    let resp = put_manifest(&tw.proxy, "team/app", "1.0.0", &first.manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        header(&resp, "tagwarden-event").is_some(),
        "an accepted write names its event"
    );

    let resp = put_manifest(&tw.proxy, "team/app", "1.0.0", &second.manifest).await;
    let err = expect_oci_error(resp, StatusCode::CONFLICT, "re-push of an immutable tag").await;
    assert_eq!(err.code, "DENIED");
    assert!(err.message.contains("immutable"), "{}", err.message);

    assert_eq!(
        crate::support::api::resolve(&registry.url(), "team/app", "1.0.0").await,
        Some(first.digest().to_string()),
        "the registry still serves the first release"
    );
    assert_eq!(
        db.query_column(
            "SELECT action || ' ' || digest FROM tag_events \
             WHERE repository = 'team/app' AND tag = '1.0.0' ORDER BY id"
        ),
        [
            Some(format!("create {}", first.digest())),
            Some(format!("refuse {}", second.digest())),
        ]
    );
    tw.stop().await;
}

/// A registry that fails the existence check: the write fails closed, never reaches
/// the registry, and leaves nothing in the ledger.
#[tokio::test]
async fn in_process_a_write_the_registry_cannot_check_fails_closed() {
    let upstream = MockServer::start().await;
    Mock::given(method("HEAD"))
        .and(path("/v2/team/app/manifests/1.0.0"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&upstream)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .named("no manifest PUT reaches the registry")
        .mount(&upstream)
        .await;
    let db = Database::fresh();
    let tw = Running::start(&upstream.uri(), db.url()).await;

    let image = Image::random(&[64]);
    let resp = put_manifest(&tw.proxy, "team/app", "1.0.0", &image.manifest).await;
    let retry_after = header(&resp, "retry-after");
    let err = expect_oci_error(resp, StatusCode::BAD_GATEWAY, "unchecked write").await;
    assert_eq!(err.code, "UNAVAILABLE");
    assert!(retry_after.is_some(), "a client is told when to retry");
    assert_eq!(
        db.query_column("SELECT count(*)::text FROM tag_events"),
        [Some("0".to_string())]
    );
    tw.stop().await;
    upstream.verify().await;
}
