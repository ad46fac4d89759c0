//! Witnesses in the configuration (`[tlog.witnesses]`): where each checkpoint is
//! posted for a cosignature, with which key the answer must verify, and how many
//! cosignatures a checkpoint should get.
//!
//! ```toml
//! [tlog.witnesses]
//! quorum = 1
//! [[tlog.witnesses.witness]]
//! url = "https://witness.example/add-checkpoint"
//! key = "witness.example/w1+1c2d3e4f+BE…"
//! timeout = "5s"
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cosignature::WitnessKey;

/// The witnesses and their quorum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WitnessesConfig {
    /// How many witnesses should cosign each checkpoint; fewer is logged and counted,
    /// never a reason to stop (default: all of them).
    pub quorum: Option<usize>,
    pub witness: Vec<WitnessConfig>,
}

/// One witness (C2SP tlog-witness).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its `add-checkpoint` URL.
    pub url: String,
    /// Its `cosignature/v1` verifier key (`<name>+<id>+<key>`); the name identifies
    /// it in logs and metrics.
    pub key: String,
    /// The whole exchange, connection to answer.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl WitnessesConfig {
    /// The quorum in force: the configured one, or every witness.
    pub fn quorum(&self) -> usize {
        self.quorum.unwrap_or(self.witness.len())
    }

    /// Check every witness at load: `Err((key, message))` names the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.witness.iter().enumerate() {
            let at = |field: &str| format!("tlog.witnesses.witness[{i}].{field}");
            let key = WitnessKey::parse(&w.key).map_err(|e| (at("key"), e))?;
            if !names.insert(key.name().to_owned()) {
                return Err((at("key"), format!("{} is listed twice", key.name())));
            }
            let url_ok = (w.url.starts_with("http://") || w.url.starts_with("https://"))
                && reqwest::Url::parse(&w.url).is_ok();
            if !url_ok {
                return Err((at("url"), "must be an http:// or https:// URL".into()));
            }
            if w.timeout < Duration::from_millis(10) || w.timeout > Duration::from_secs(60) {
                return Err((at("timeout"), "must be between 10ms and 60s".into()));
            }
        }
        if let Some(q) = self.quorum {
            if q == 0 || q > self.witness.len() {
                return Err((
                    "tlog.witnesses.quorum".into(),
                    format!(
                        "must be between 1 and the number of witnesses ({})",
                        self.witness.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::cosignature::WitnessSigner;

    fn witness(key: &str) -> WitnessConfig {
        WitnessConfig {
            url: "https://witness.test/add-checkpoint".into(),
            key: key.into(),
            timeout: default_timeout(),
        }
    }

    #[test]
    fn witnesses_are_checked_at_load() {
        let (_, good) = WitnessSigner::generate("witness.test/w1").unwrap();
        let (_, log_key) = crate::tlog::note::generate("log.test/a").unwrap();
        let ok = WitnessesConfig {
            quorum: Some(1),
            witness: vec![witness(&good)],
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.quorum(), 1);

        let bad_key = WitnessesConfig {
            quorum: None,
            witness: vec![witness(&good), witness(&log_key)],
        };
        let (key, message) = bad_key.validate().unwrap_err();
        assert_eq!(key, "tlog.witnesses.witness[1].key");
        assert!(message.contains("cosignature/v1"), "{message}");

        let twice = WitnessesConfig {
            quorum: None,
            witness: vec![witness(&good), witness(&good)],
        };
        assert!(twice.validate().unwrap_err().1.contains("listed twice"));

        let too_many = WitnessesConfig {
            quorum: Some(2),
            witness: vec![witness(&good)],
        };
        assert_eq!(too_many.validate().unwrap_err().0, "tlog.witnesses.quorum");

        let mut bad_url = witness(&good);
        bad_url.url = "ftp://witness.test/".into();
        let bad_url = WitnessesConfig {
            quorum: None,
            witness: vec![bad_url],
        };
        assert_eq!(
            bad_url.validate().unwrap_err().0,
            "tlog.witnesses.witness[0].url"
        );
    }
}
