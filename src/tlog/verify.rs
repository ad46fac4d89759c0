//! `log verify`: replay the whole log from the database and check it against signed
//! checkpoints, without trusting anything the database says about itself.
//!
//! Every leaf is recomputed from its event; the stored hashes and tiles from the
//! leaves; the root at each checkpoint's size from those. The newest signed checkpoint
//! in the database and every older one the auditor brings must verify with the key and
//! match the recomputed tree (an older one that does not is a rewrite of history before
//! it; one larger than the tree is a truncation). Finally the current bindings must be
//! exactly what replaying the events gives.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use super::tree::Tree;
use super::{hex_hash, leaf, note, store, LogError};
use crate::audit::timeline::{effect, Effect};
use crate::ledger::StoredEvent;

/// The outcome: what was checked, and the first thing that does not hold.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: Vec<String>,
    pub failure: Option<String>,
}

impl Report {
    fn ok(&mut self, line: String) {
        self.checked.push(line);
    }
}

/// An older checkpoint given by the auditor: where it came from, and its note.
pub struct Given {
    pub name: String,
    pub note: String,
}

pub async fn run(
    conn: &mut PgConnection,
    verifier_key: &str,
    older: &[Given],
) -> Result<Report, LogError> {
    let mut report = Report::default();
    if let Err(why) = check(conn, verifier_key, older, &mut report).await? {
        report.failure = Some(why);
    }
    Ok(report)
}

type Outcome = Result<Result<(), String>, LogError>;

async fn check(
    conn: &mut PgConnection,
    verifier_key: &str,
    older: &[Given],
    report: &mut Report,
) -> Outcome {
    let Some((_, latest)) = store::latest_checkpoint(conn).await? else {
        return Ok(Err("the database holds no signed checkpoint".into()));
    };
    let latest = match note::verify(&latest, verifier_key) {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("the database's newest checkpoint: {e}"))),
    };
    report.ok(format!(
        "the database's newest checkpoint ({} leaves, origin {}) is signed by the key",
        latest.size, latest.origin
    ));

    // Leaves, recomputed from their events.
    let mut tree = Tree::default();
    let mut events: Vec<StoredEvent> = Vec::new();
    for (stored, event) in store::all_leaves(conn).await? {
        let i = tree.size();
        if stored.index != i {
            return Ok(Err(format!(
                "leaf {i} is missing: the next stored leaf is {}",
                stored.index
            )));
        }
        let Some(event) = event else {
            return Ok(Err(format!(
                "leaf {i} names event {}, which is gone from tag_events",
                stored.event_id
            )));
        };
        let record = tlog_tiles::record_hash(&leaf::encode(&event.event));
        if record != stored.hash {
            return Ok(Err(format!(
                "leaf {i} (event {}) does not match its stored hash: the event was edited, or events were reordered",
                stored.event_id
            )));
        }
        tree.push(record);
        events.push(event.event);
    }
    report.ok(format!(
        "{} leaves recomputed from their events",
        tree.size()
    ));

    // Stored hashes and tiles, recomputed from the leaves.
    let stored = store::all_hashes(conn).await?;
    if stored.len() != tree.stored().len() {
        return Ok(Err(format!(
            "the database stores {} tree hashes; {} leaves make {}",
            stored.len(),
            tree.size(),
            tree.stored().len()
        )));
    }
    for (k, (idx, h)) in stored.iter().enumerate() {
        if *idx != k as u64 || *h != tree.stored()[k] {
            let (level, n) = tlog_tiles::split_stored_hash_index(k as u64);
            return Ok(Err(format!(
                "stored hash {k} (level {level}, node {n}) differs from the tree its leaves make"
            )));
        }
    }
    let tiles = match tree.tiles(tree.size()) {
        Ok(t) => t,
        Err(e) => return Err(LogError::Incomplete(e.to_string())),
    };
    let stored_tiles: BTreeMap<(u8, u64), (u32, Vec<u8>)> = store::all_tiles(conn)
        .await?
        .into_iter()
        .map(|(l, n, w, d)| ((l, n), (w, d)))
        .collect();
    if stored_tiles.len() != tiles.len() {
        return Ok(Err(format!(
            "the database stores {} tiles; the tree has {}",
            stored_tiles.len(),
            tiles.len()
        )));
    }
    for (t, data) in &tiles {
        let key = (t.level(), t.level_index());
        if stored_tiles.get(&key) != Some(&(t.width(), data.clone())) {
            return Ok(Err(format!(
                "tile {} differs from the tree its leaves make",
                super::tree::c2sp_path(t)
            )));
        }
    }
    report.ok(format!(
        "{} stored hashes and {} tiles match the leaves",
        stored.len(),
        tiles.len()
    ));

    // Checkpoints: the newest, then each older one given.
    if let Err(e) = matches_tree(&tree, &latest, "the database's newest checkpoint") {
        return Ok(Err(e));
    }
    for g in older {
        let c = match note::verify(&g.note, verifier_key) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("checkpoint {}: {e}", g.name))),
        };
        if c.origin != latest.origin {
            return Ok(Err(format!(
                "checkpoint {} is of log {:?}, not {:?}",
                g.name, c.origin, latest.origin
            )));
        }
        if let Err(e) = matches_tree(&tree, &c, &format!("checkpoint {}", g.name)) {
            return Ok(Err(e));
        }
        // The same, as a consistency proof from it to the newest, as a witness checks.
        let (small, big) = if c.size <= latest.size {
            (&c, &latest)
        } else {
            (&latest, &c)
        };
        let consistent = tlog_tiles::prove_tree(big.size, small.size, &tree)
            .and_then(|p| tlog_tiles::check_tree(&p, big.size, big.root, small.size, small.root));
        if consistent.is_err() {
            return Ok(Err(format!(
                "checkpoint {} is not consistent with the newest checkpoint",
                g.name
            )));
        }
        report.ok(format!(
            "checkpoint {} ({} leaves) is consistent with the log",
            g.name, c.size
        ));
    }

    // Bindings: what replaying every event (the log's, then those not yet in it) gives.
    let pending = store::unintegrated(conn).await?;
    let mut replay: BTreeMap<(String, String), (String, bool)> = BTreeMap::new();
    for e in events.iter().chain(pending.iter()) {
        let Some(tag) = &e.tag else { continue };
        match effect(e.action, e.reason.as_deref(), e.digest.as_deref()) {
            Effect::Bind(d) => {
                replay.insert((e.repository.clone(), tag.clone()), (d.to_owned(), false));
            }
            Effect::Unbind => {
                if let Some(b) = replay.get_mut(&(e.repository.clone(), tag.clone())) {
                    b.1 = true;
                }
            }
            Effect::Unchanged => {}
        }
    }
    let bindings = store::all_bindings(conn).await?;
    for (repo, tag, digest, deleted) in &bindings {
        match replay.remove(&(repo.clone(), tag.clone())) {
            None => {
                return Ok(Err(format!(
                    "binding {repo}:{tag} -> {digest} has no event that made it"
                )))
            }
            Some((d, del)) if d != *digest || del != *deleted => {
                return Ok(Err(format!(
                    "binding {repo}:{tag} is {digest}{} but the events give {d}{}",
                    if *deleted { " (deleted)" } else { "" },
                    if del { " (deleted)" } else { "" },
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(((repo, tag), (d, _))) = replay.into_iter().next() {
        return Ok(Err(format!(
            "the events bind {repo}:{tag} to {d} but tag_bindings has no row for it"
        )));
    }
    report.ok(format!(
        "{} bindings are what the {} events give ({} not yet in the log)",
        bindings.len(),
        events.len() + pending.len(),
        pending.len()
    ));
    Ok(Ok(()))
}

fn matches_tree(tree: &Tree, c: &note::Signed, what: &str) -> Result<(), String> {
    if c.size > tree.size() {
        return Err(format!(
            "{what} has {} leaves but the database's log only {}: its history was truncated",
            c.size,
            tree.size()
        ));
    }
    let root = tree.root(c.size).map_err(|e| e.to_string())?;
    if root != c.root {
        return Err(format!(
            "{what} has root {} at {} leaves but the database's leaves give {}: history before leaf {} was rewritten",
            hex_hash(&c.root),
            c.size,
            hex_hash(&root),
            c.size
        ));
    }
    Ok(())
}
