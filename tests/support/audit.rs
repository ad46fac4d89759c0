//! What the audit API and audit page tests share: a config with an auditor token, and
//! a registry user who pushes and deletes images through tagwarden.

use super::{skopeo, Database, Image, OciLayout, Registry, Tagwarden};

/// The token of the auditor configured by [`config`].
pub const TOKEN: &str = "auditor-token-0123456789abcdef";
/// The registry user who pushes and deletes.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "alice-registry-pw";

/// tagwarden config lines that give [`TOKEN`] the auditor role.
pub fn config() -> String {
    format!("[[admin.tokens]]\nname = \"auditors\"\ntoken = \"{TOKEN}\"\nrole = \"auditor\"\n")
}

/// A registry that wants [`USER`]'s login, its own database, and tagwarden in front
/// with [`config`]: what both audit suites push through before asking questions.
/// Fields drop in order: tagwarden stops before its database and registry go.
pub struct Stack {
    pub tw: Tagwarden,
    pub db: Database,
    pub registry: Registry,
}

impl Stack {
    pub async fn start() -> Stack {
        let registry = Registry::start_with_htpasswd(USER, PASSWORD).await;
        let db = Database::fresh();
        let tw = Tagwarden::builder(&registry.url(), db.url())
            .config(&config())
            .start()
            .await;
        Stack { registry, db, tw }
    }
}

/// Pushes `image` to `dest` as [`USER`], every digest preserved.
pub async fn push(image: &Image, dest: &str) -> skopeo::SkopeoOutput {
    let layout = OciLayout::with_image(image);
    skopeo::copy(&layout.reference(), dest)
        .preserve_digests()
        .dest_creds(&format!("{USER}:{PASSWORD}"))
        .run()
        .await
}

/// `skopeo delete` as [`USER`]: resolves the tag, then deletes by digest.
pub async fn delete(reference: &str) -> skopeo::SkopeoOutput {
    skopeo::delete_with_creds(reference, &format!("{USER}:{PASSWORD}")).await
}
