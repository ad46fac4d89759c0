//! The client of a tagwarden's audit and admin API, for the command line.

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;

/// A client of a tagwarden's audit API.
pub(in crate::cli) struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    token: String,
}

impl ApiClient {
    pub(in crate::cli) fn new(url: &str, token: String) -> anyhow::Result<Self> {
        let base: reqwest::Url = url.parse().with_context(|| format!("--api {url}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--api {url}: expected an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .context("HTTP client")?;
        Ok(ApiClient { http, base, token })
    }

    pub(in crate::cli) async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let request = self.http.get(self.url(endpoint)?).query(query);
        self.send(request).await
    }

    /// POST a JSON body to an endpoint (the admin operations).
    pub(in crate::cli) async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<T> {
        let request = self.http.post(self.url(endpoint)?).json(body);
        self.send(request).await
    }

    fn url(&self, endpoint: &str) -> anyhow::Result<reqwest::Url> {
        self.base
            .join(&format!("{}/{endpoint}", crate::api::PREFIX))
            .context("API URL")
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let resp = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await.context("reading the API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            bail!("the API answered {status}: {message}");
        }
        serde_json::from_slice(&body).context("the API's answer is not what was expected")
    }
}
