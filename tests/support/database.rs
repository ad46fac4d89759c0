//! A fresh, uniquely named Postgres database per test, dropped afterwards.
//!
//! The work runs on a helper thread with its own small runtime, so `fresh()` and drop
//! work the same from plain `#[test]`s and from inside `#[tokio::test]`s.

use std::future::Future;
use std::time::Duration;

use reqwest::Url;
use sqlx::{Connection, Executor, PgConnection};

use super::PROVISION_HINT;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct Database {
    name: String,
    url: String,
    admin_url: String,
    /// Created by [`Database::fresh`] and dropped with this value.
    owned: bool,
}

impl Database {
    /// Creates `tagwarden_t_<random>` on the server named by `DATABASE_URL`
    /// (default `postgres://postgres@127.0.0.1:5432/postgres`).
    pub fn fresh() -> Database {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
        let name = format!("tagwarden_t_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name);

        let (admin, db) = (admin_url.clone(), name.clone());
        run_blocking(async move {
            let mut conn = connect(&admin).await?;
            conn.execute(format!(r#"CREATE DATABASE "{db}""#).as_str())
                .await
                .map_err(|e| format!("CREATE DATABASE {db}: {e}"))?;
            conn.close().await.ok();
            Ok(())
        })
        .unwrap_or_else(|e| panic!("Postgres is not usable at {admin_url}: {e}\n{PROVISION_HINT}"));
        Database {
            name,
            url,
            admin_url,
            owned: true,
        }
    }

    /// A new database with the same contents (`CREATE DATABASE ... TEMPLATE`), dropped
    /// with the copy. Nothing may be connected to this one meanwhile.
    pub fn copy(&self) -> Database {
        let name = format!("tagwarden_t_{}", uuid::Uuid::new_v4().simple());
        let (admin, db, from) = (self.admin_url.clone(), name.clone(), self.name.clone());
        run_blocking(async move {
            let mut conn = connect(&admin).await?;
            conn.execute(format!(r#"CREATE DATABASE "{db}" TEMPLATE "{from}""#).as_str())
                .await
                .map_err(|e| format!("CREATE DATABASE {db} TEMPLATE {from}: {e}"))?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("copy {}: {e}", self.name));
        Database {
            url: with_database(&self.admin_url, &name),
            name,
            admin_url: self.admin_url.clone(),
            owned: true,
        }
    }

    /// A handle on an existing database (for queries), left alone on drop.
    pub fn attach(url: &str) -> Database {
        let parsed = Url::parse(url).unwrap_or_else(|e| panic!("bad database URL {url:?}: {e}"));
        Database {
            name: parsed.path().trim_start_matches('/').to_string(),
            url: url.to_string(),
            admin_url: url.to_string(),
            owned: false,
        }
    }

    /// The connection URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number in the first column of the first row of `sql` (a `count(*)::text`),
    /// `NULL` as 0.
    pub fn count(&self, sql: &str) -> i64 {
        self.query_column(sql)[0]
            .as_deref()
            .unwrap_or("0")
            .parse()
            .unwrap()
    }

    /// Runs one query on this database and returns each row's first column as text
    /// (`NULL` as `None`); for tests that look at the ledger.
    pub fn query_column(&self, sql: &str) -> Vec<Option<String>> {
        let (url, sql) = (self.url.clone(), sql.to_string());
        run_blocking(async move {
            use sqlx::Row;
            let mut conn = connect(&url).await?;
            let rows = sqlx::query(&sql)
                .fetch_all(&mut conn)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
            Ok(rows
                .iter()
                .map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                .collect())
        })
        .unwrap_or_else(|e| panic!("query on {}: {e}", self.name))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let (admin, db) = (self.admin_url.clone(), self.name.clone());
        // Best effort: a leftover test database is harmless.
        let _ = run_blocking(async move {
            let mut conn = connect(&admin).await?;
            conn.execute(format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#).as_str())
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        });
    }
}

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out after 10s".to_string()),
    }
}

/// `base` with its path replaced by `/<database>`.
fn with_database(base: &str, database: &str) -> String {
    let mut url = Url::parse(base).unwrap_or_else(|e| panic!("bad DATABASE_URL {base:?}: {e}"));
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn run_blocking<T, F>(fut: F) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = Result<T, String>> + Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(fut)
    })
    .join()
    .map_err(|_| "database helper thread panicked".to_string())?
}
