//! The Merkle tree's stored hashes, in memory, read through `tlog_tiles`.
//!
//! `tlog_tiles` (a port of Go's sumdb/tlog) does the RFC 6962 hashing, proofs and
//! tiling over any [`HashReader`]. [`Hashes`] is a cache of stored hashes, keyed by
//! stored-hash index, that remembers which ones a computation asked for and did not
//! have, so the caller can load exactly those (from the database) and try again.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::{Hash, HashReader, Tile};

/// Tile height: C2SP tlog-tiles fixes it at 8 (256 hashes a tile).
pub const TILE_HEIGHT: u8 = 8;

/// Stored hashes by index, and the indexes last asked for but missing.
#[derive(Debug, Default)]
pub struct Hashes {
    known: HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for i in indexes {
            match self.known.get(i) {
                Some(h) => out.push(*h),
                None => missing.push(*i),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }
}

impl Hashes {
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.known.insert(index, hash);
    }

    /// The indexes the last failed read lacked (and forget them).
    pub fn take_missing(&self) -> Vec<u64> {
        let mut m = std::mem::take(&mut *self.missing.borrow_mut());
        m.sort_unstable();
        m.dedup();
        m
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// A whole tree in memory, built leaf by leaf: what `log verify` recomputes.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every stored hash, by stored-hash index (they are dense).
    stored: Vec<Hash>,
    size: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.stored.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Tree {
    /// Append a leaf given its record hash ([`tlog_tiles::record_hash`] of its bytes).
    pub fn push(&mut self, record: Hash) {
        let new = tlog_tiles::stored_hashes_for_record_hash(self.size, record, self)
            .expect("a complete in-memory tree has every hash it needs");
        self.stored.extend(new);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every stored hash, in index order.
    pub fn stored(&self) -> &[Hash] {
        &self.stored
    }

    /// The root hash of the first `n` leaves.
    pub fn root(&self, n: u64) -> Result<Hash, tlog_tiles::Error> {
        if n > self.size {
            return Err(tlog_tiles::Error::IndexesNotInTree);
        }
        tlog_tiles::tree_hash(n, self)
    }

    /// The hash tiles of a tree of `n` leaves: every full tile and the partial ones at
    /// its right edge, as `(tile, data)`.
    pub fn tiles(&self, n: u64) -> Result<Vec<(Tile, Vec<u8>)>, tlog_tiles::Error> {
        Tile::new_tiles(TILE_HEIGHT, 0, n)
            .into_iter()
            .map(|t| t.read_data(self).map(|d| (t, d)))
            .collect()
    }
}

/// The C2SP path of a hash tile under `/log/`: `tile/<L>/<N>[.p/<W>]`.
pub fn c2sp_path(tile: &Tile) -> String {
    let go = tile.path();
    let prefix = format!("tile/{TILE_HEIGHT}/");
    format!("tile/{}", go.strip_prefix(&prefix).unwrap_or(&go))
}

/// The hash tile a C2SP path names (`tile/<L>/<N>[.p/<W>]`), if it is one.
pub fn parse_c2sp_path(path: &str) -> Option<Tile> {
    let rest = path.strip_prefix("tile/")?;
    if rest.starts_with("data/") {
        return None;
    }
    let t = Tile::from_path(&format!("tile/{TILE_HEIGHT}/{rest}")).ok()?;
    (!t.is_data()).then_some(t)
}
