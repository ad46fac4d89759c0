//! Keys and signed checkpoints (C2SP signed-note, tlog-checkpoint), with the
//! `signed_note` and `tlog_tiles` crates.
//!
//! The signing key is a file holding the note signer key
//! (`PRIVATE+KEY+<name>+<id>+<key>`); it is read at startup and never stored in the
//! database. Anyone may hold the verifier key (`<name>+<id>+<key>`).

use std::path::Path;

use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// A new Ed25519 key pair for a log named `name`: `(signer key, verifier key)`.
pub fn generate(name: &str) -> Result<(String, String), String> {
    if !signed_note::is_key_name_valid(name) {
        return Err(format!(
            "{name:?} is not a valid key name (no spaces, no '+')"
        ));
    }
    Ok(signed_note::generate_key(&mut rand_core::OsRng, name))
}

/// A checkpoint signer: the key and the origin line it signs.
pub struct Signer {
    signer: StandardSigner,
    origin: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("origin", &self.origin)
            .finish()
    }
}

impl Signer {
    /// Read the key file; `origin` defaults to the key's name.
    pub fn from_file(path: &Path, origin: Option<&str>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("tlog.signing_key_file {}: {e}", path.display()))?;
        Self::from_key(text.trim(), origin)
            .map_err(|e| format!("tlog.signing_key_file {}: {e}", path.display()))
    }

    pub fn from_key(key: &str, origin: Option<&str>) -> Result<Self, String> {
        let signer = StandardSigner::new(key).map_err(|e| format!("not a signer key: {e}"))?;
        let origin = origin
            .map(str::to_owned)
            .unwrap_or_else(|| signed_note::Signer::name(&signer).to_owned());
        Checkpoint::new(&origin, 0, tlog_tiles::EMPTY_HASH, "")
            .map_err(|_| format!("{origin:?} is not a valid origin"))?;
        Ok(Signer { signer, origin })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The signed checkpoint note of a tree of `size` leaves with root `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<String, String> {
        let text = Checkpoint::new(&self.origin, size, root, "")
            .map_err(|e| e.to_string())?
            .to_bytes();
        let mut note = Note::new(&text, &[]).map_err(|e| e.to_string())?;
        note.add_sigs(&[&self.signer]).map_err(|e| e.to_string())?;
        String::from_utf8(note.to_bytes()).map_err(|e| e.to_string())
    }
}

/// A checkpoint whose signature by the verifier key was checked.
#[derive(Debug, Clone)]
pub struct Signed {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub note: String,
}

/// Check a checkpoint note's signature by `verifier_key` and read it.
pub fn verify(note: &str, verifier_key: &str) -> Result<Signed, String> {
    let verifier = StandardVerifier::new(verifier_key.trim())
        .map_err(|e| format!("not a verifier key: {e}"))?;
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
    parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| format!("the checkpoint's signature does not verify: {e}"))?;
    let c = Checkpoint::from_bytes(parsed.text()).map_err(|e| format!("{e}"))?;
    Ok(Signed {
        origin: c.origin().to_owned(),
        size: c.size(),
        root: *c.hash(),
        note: note.to_owned(),
    })
}

/// Read a checkpoint note without checking any signature (the anchor's own copy).
pub fn read_unverified(note: &str) -> Result<(u64, Hash), String> {
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|e| format!("not a signed note: {e}"))?;
    let c = Checkpoint::from_bytes(parsed.text()).map_err(|e| format!("{e}"))?;
    Ok((c.size(), *c.hash()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let (skey, vkey) = generate("log.example/tagwarden").unwrap();
        let s = Signer::from_key(&skey, None).unwrap();
        let root = tlog_tiles::record_hash(b"x");
        let note = s.sign(3, root).unwrap();
        let c = verify(&note, &vkey).unwrap();
        assert_eq!(
            (c.origin.as_str(), c.size, c.root),
            ("log.example/tagwarden", 3, root)
        );
        let (_, other) = generate("log.example/tagwarden").unwrap();
        assert!(verify(&note, &other).is_err());
        let forged = note.replacen("\n3\n", "\n4\n", 1);
        assert!(verify(&forged, &vkey).is_err());
        assert!(format!("{s:?}").find("PRIVATE").is_none());
    }
}
