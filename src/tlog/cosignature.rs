//! Witness cosignatures (C2SP tlog-cosignature, `cosignature/v1`), as
//! [`signed_note`] verifiers and signers, which that crate (0.2) lacks.
//!
//! A witness key is a signed-note verifier key `<name>+<id>+<key>` whose key is the
//! algorithm byte 0x04 then an Ed25519 public key. A cosignature line is
//! `— <name> base64(id ‖ time ‖ sig)`: the witness's clock as big-endian seconds,
//! and an Ed25519 signature over `cosignature/v1\ntime <time>\n` then the checkpoint
//! text. The time is signed, so a cosignature cannot be redated.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use signed_note::{Note, Signature};

/// The algorithm byte of `cosignature/v1` keys.
const ALG_COSIGNATURE_V1: u8 = 0x04;

fn signed_message(time: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

/// A witness's verifier key.
#[derive(Debug, Clone)]
pub struct WitnessKey {
    name: String,
    id: u32,
    key: VerifyingKey,
    text: String,
}

impl WitnessKey {
    /// Parse `<name>+<id>+<key>`; the key must be a `cosignature/v1` (0x04) key.
    pub fn parse(vkey: &str) -> Result<Self, String> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a witness key is `<name>+<id>+<key>`".into());
        };
        if !signed_note::is_key_name_valid(name) {
            return Err(format!("{name:?} is not a valid key name"));
        }
        let id = u32::from_str_radix(id, 16)
            .ok()
            .filter(|_| id.len() == 8)
            .ok_or("the key id is not 8 hex digits")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| "the key is not base64")?;
        let Some((&alg, public)) = raw.split_first() else {
            return Err("the key is empty".into());
        };
        if alg != ALG_COSIGNATURE_V1 {
            return Err(format!(
                "the key's algorithm is {alg:#04x}; a witness cosigns with cosignature/v1 (0x04)"
            ));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| "an Ed25519 public key is 32 bytes")?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| "not an Ed25519 public key")?;
        if signed_note::key_id(name, &raw) != id {
            return Err("the key id does not match the name and key".into());
        }
        Ok(WitnessKey {
            name: name.to_owned(),
            id,
            key,
            text: vkey.to_owned(),
        })
    }

    /// The witness's name, as in its cosignature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key as configured (`<name>+<id>+<key>`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Check one signature of `text` (a checkpoint's text); its time if it verifies.
    /// `None` when the signature is not by this key at all.
    fn check(&self, text: &[u8], sig: &Signature) -> Option<Result<u64, String>> {
        if sig.name() != self.name || sig.id() != self.id {
            return None;
        }
        let bytes = sig.signature();
        if bytes.len() != 8 + 64 {
            return Some(Err(format!("a cosignature by {} is malformed", self.name)));
        }
        let time = u64::from_be_bytes(bytes[..8].try_into().unwrap_or_default());
        let ed = ed25519_dalek::Signature::from_slice(&bytes[8..]).ok();
        let ok = ed.is_some_and(|ed| self.key.verify(&signed_message(time, text), &ed).is_ok());
        Some(if ok {
            Ok(time)
        } else {
            Err(format!("the cosignature by {} does not verify", self.name))
        })
    }
}

/// A verified cosignature: the witness's time, and its signature line (without its
/// newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub time: u64,
    pub line: String,
}

/// The cosignature by `key` among the signature lines of the signed note `note`, if
/// it has a valid one. A line by this key that fails to verify is an error.
pub fn find(note: &str, key: &WitnessKey) -> Result<Option<Cosigned>, String> {
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
    let mut found = None;
    for sig in parsed_sigs(note) {
        match key.check(parsed.text(), &sig) {
            None => {}
            Some(Err(e)) => return Err(e),
            Some(Ok(time)) => {
                found.get_or_insert(Cosigned {
                    time,
                    line: String::from_utf8_lossy(&sig.to_bytes())
                        .trim_end()
                        .to_owned(),
                });
            }
        }
    }
    Ok(found)
}

/// The signature lines of a note (after its blank line), as parsed signatures.
fn parsed_sigs(note: &str) -> Vec<Signature> {
    let Some((_, sigs)) = note.rsplit_once("\n\n") else {
        return Vec::new();
    };
    sigs.lines()
        .filter_map(|l| Signature::from_bytes(l.as_bytes()).ok())
        .collect()
}

/// Check a witness's answer (signature lines) against the checkpoint `note` it was
/// given: the one valid cosignature by `key`. Other lines are ignored.
pub fn from_answer(note: &str, answer: &str, key: &WitnessKey) -> Result<Cosigned, String> {
    let text = Note::from_bytes(note.as_bytes())
        .map_err(|e| format!("not a signed note: {e}"))?
        .text()
        .to_vec();
    let mut failure = None;
    for line in answer.lines().take(64) {
        let Ok(sig) = Signature::from_bytes(line.as_bytes()) else {
            continue;
        };
        match key.check(&text, &sig) {
            None => {}
            Some(Ok(time)) => {
                return Ok(Cosigned {
                    time,
                    line: line.to_owned(),
                })
            }
            Some(Err(e)) => failure = Some(e),
        }
    }
    Err(failure.unwrap_or_else(|| format!("the answer holds no cosignature by {}", key.name)))
}

/// The outcome of checking a checkpoint's cosignatures against witness keys.
#[derive(Debug, Default)]
pub struct Quorum {
    /// `(witness name, time)` of each valid cosignature.
    pub cosigned: Vec<(String, u64)>,
    /// `(witness name, why)` of each witness without one.
    pub missing: Vec<(String, String)>,
}

/// Which of `keys` cosigned the checkpoint note `note`.
pub fn check(note: &str, keys: &[WitnessKey]) -> Quorum {
    let mut q = Quorum::default();
    for key in keys {
        match find(note, key) {
            Ok(Some(c)) => q.cosigned.push((key.name.clone(), c.time)),
            Ok(None) => q
                .missing
                .push((key.name.clone(), "no cosignature".to_owned())),
            Err(e) => q.missing.push((key.name.clone(), e)),
        }
    }
    q
}

/// A witness's signing key: what a witness runs (and tests play one with).
pub struct WitnessSigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl WitnessSigner {
    /// A new key for a witness named `name`, and its verifier key.
    pub fn generate(name: &str) -> Result<(Self, String), String> {
        if !signed_note::is_key_name_valid(name) {
            return Err(format!("{name:?} is not a valid key name"));
        }
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(key.verifying_key().as_bytes());
        let id = signed_note::key_id(name, &raw);
        let vkey = format!(
            "{name}+{id:08x}+{}",
            base64::engine::general_purpose::STANDARD.encode(&raw)
        );
        let s = WitnessSigner {
            name: name.to_owned(),
            id,
            key,
        };
        Ok((s, vkey))
    }

    /// The cosignature line of the checkpoint note `note` at `time`.
    pub fn cosign(&self, note: &str, time: u64) -> Result<String, String> {
        let parsed =
            Note::from_bytes(note.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
        let sig = self.key.sign(&signed_message(time, parsed.text()));
        let mut bytes = time.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        let line = Signature::new(self.name.clone(), self.id, bytes).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&line.to_bytes()).into_owned())
    }
}

impl std::fmt::Debug for WitnessSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WitnessSigner")
            .field("name", &self.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> String {
        let (skey, _) = super::super::note::generate("log.test/a").unwrap();
        let s = super::super::note::Signer::from_key(&skey, None).unwrap();
        s.sign(5, tlog_tiles::record_hash(b"x")).unwrap()
    }

    fn b64(line: &str) -> Vec<u8> {
        let sig = line.trim_end().rsplit_once(' ').unwrap().1;
        base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap()
    }

    fn with_sig(line: &str, bytes: &[u8]) -> String {
        let head = line.trim_end().rsplit_once(' ').unwrap().0;
        format!(
            "{head} {}\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn a_good_cosignature_verifies_with_its_time() {
        let note = checkpoint();
        let (w, vkey) = WitnessSigner::generate("witness.test/w1").unwrap();
        let key = WitnessKey::parse(&vkey).unwrap();
        let line = w.cosign(&note, 1_700_000_000).unwrap();
        let c = from_answer(&note, &line, &key).unwrap();
        assert_eq!(c.time, 1_700_000_000);
        let cosigned = format!("{note}{line}");
        assert_eq!(find(&cosigned, &key).unwrap(), Some(c));
        // The log's own signature still verifies on the cosigned note.
        assert!(Note::from_bytes(cosigned.as_bytes()).is_ok());
        let q = check(&cosigned, &[key]);
        assert_eq!(q.cosigned.len(), 1);
        assert!(q.missing.is_empty());
    }

    #[test]
    fn a_wrong_key_finds_no_cosignature() {
        let note = checkpoint();
        let (w, _) = WitnessSigner::generate("witness.test/w1").unwrap();
        let (_, other) = WitnessSigner::generate("witness.test/w1").unwrap();
        let other = WitnessKey::parse(&other).unwrap();
        let line = w.cosign(&note, 1).unwrap();
        assert!(from_answer(&note, &line, &other).is_err());
        let q = check(&format!("{note}{line}"), &[other]);
        assert!(q.cosigned.is_empty());
        assert_eq!(q.missing.len(), 1);
    }

    #[test]
    fn a_tampered_checkpoint_fails() {
        let note = checkpoint();
        let (w, vkey) = WitnessSigner::generate("witness.test/w1").unwrap();
        let key = WitnessKey::parse(&vkey).unwrap();
        let line = w.cosign(&note, 1).unwrap();
        let tampered = note.replacen("\n5\n", "\n6\n", 1);
        assert!(from_answer(&tampered, &line, &key).is_err());
        let e = find(&format!("{tampered}{line}"), &key).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn a_changed_time_fails() {
        let note = checkpoint();
        let (w, vkey) = WitnessSigner::generate("witness.test/w1").unwrap();
        let key = WitnessKey::parse(&vkey).unwrap();
        let line = w.cosign(&note, 1_700_000_000).unwrap();
        let mut bytes = b64(&line);
        // id (4 bytes), then the time: move it by one second.
        bytes[11] ^= 1;
        let redated = with_sig(&line, &bytes);
        assert!(from_answer(&note, &redated, &key).is_err());
        assert!(find(&format!("{note}{redated}"), &key).is_err());
    }

    #[test]
    fn bad_witness_keys_are_refused_clearly() {
        let (skey, vkey) = super::super::note::generate("log.test/a").unwrap();
        let e = WitnessKey::parse(&vkey).unwrap_err();
        assert!(e.contains("cosignature/v1"), "{e}");
        assert!(WitnessKey::parse(&skey).is_err());
        assert!(WitnessKey::parse("w+zz+AA==").is_err());
        let (_, good) = WitnessSigner::generate("witness.test/w1").unwrap();
        let renamed = good.replacen("witness.test/w1", "witness.test/w2", 1);
        assert!(WitnessKey::parse(&renamed)
            .unwrap_err()
            .contains("does not match"));
    }
}
