//! The transparency log's tree, proofs and tiles (tlog_tiles via tagwarden::tlog::tree)
//! against an independent, deliberately naive RFC 6962 computation.

use proptest::prelude::*;
use sha2::{Digest as _, Sha256};
use tagwarden::tlog::tree::{self, Tree};
use tlog_tiles::Hash;

// RFC 6962 section 2.1, written from the text: MTH, PATH and PROOF over leaf data.
fn leaf_hash(d: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(d)
        .finalize()
        .into()
}

fn node(l: [u8; 32], r: [u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(l)
        .chain_update(r)
        .finalize()
        .into()
}

/// The largest power of two smaller than n (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> [u8; 32] {
    match d.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(&d[0]),
        n => {
            let k = split(n);
            node(mth(&d[..k]), mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = split(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn consistency(m: usize, d: &[Vec<u8>]) -> Vec<[u8; 32]> {
    if m == 0 || m == d.len() {
        return vec![];
    }
    subproof(m, d, true)
}

fn build(leaves: &[Vec<u8>]) -> Tree {
    let mut t = Tree::default();
    for l in leaves {
        t.push(tlog_tiles::record_hash(l));
    }
    t
}

fn raw(p: &[Hash]) -> Vec<[u8; 32]> {
    p.iter().map(|h| h.0).collect()
}

fn leaves() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_prefix_root_is_the_rfc6962_root(d in leaves()) {
        let t = build(&d);
        for n in 0..=d.len() {
            prop_assert_eq!(t.root(n as u64).unwrap().0, mth(&d[..n]), "size {}", n);
        }
    }

    #[test]
    fn inclusion_proofs_are_rfc6962_paths_and_check(d in leaves(), pick in any::<prop::sample::Index>(), size in any::<prop::sample::Index>()) {
        let t = build(&d);
        let n = size.index(d.len()) + 1;
        let m = pick.index(n);
        let root = t.root(n as u64).unwrap();
        let p = tlog_tiles::prove_record(n as u64, m as u64, &t).unwrap();
        prop_assert_eq!(raw(&p), path(m, &d[..n]));
        let h = tlog_tiles::record_hash(&d[m]);
        prop_assert!(tlog_tiles::check_record(&p, n as u64, root, m as u64, h).is_ok());
        // Another leaf, another position, or a damaged path does not check.
        let other = tlog_tiles::record_hash(&[d[m].clone(), vec![0xff]].concat());
        prop_assert!(tlog_tiles::check_record(&p, n as u64, root, m as u64, other).is_err());
        if n > 1 {
            prop_assert!(tlog_tiles::check_record(&p, n as u64, root, ((m + 1) % n) as u64, h).is_err() || d[(m + 1) % n] == d[m]);
            let mut bad = p.clone();
            bad[0].0[0] ^= 1;
            prop_assert!(tlog_tiles::check_record(&bad, n as u64, root, m as u64, h).is_err());
        }
    }

    #[test]
    fn consistency_proofs_are_rfc6962_proofs_and_check(d in leaves(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let t = build(&d);
        let (x, y) = (a.index(d.len()) + 1, b.index(d.len()) + 1);
        let (m, n) = (x.min(y), x.max(y));
        let p = tlog_tiles::prove_tree(n as u64, m as u64, &t).unwrap();
        prop_assert_eq!(raw(&p), consistency(m, &d[..n]));
        let (rm, rn) = (t.root(m as u64).unwrap(), t.root(n as u64).unwrap());
        prop_assert!(tlog_tiles::check_tree(&p, n as u64, rn, m as u64, rm).is_ok());
        // A rewritten older tree is not consistent with the newer one.
        if m < n {
            let mut forked = d[..n].to_vec();
            forked[m - 1].push(0xaa);
            let rf = Hash(mth(&forked[..m]));
            prop_assert!(tlog_tiles::check_tree(&p, n as u64, rn, m as u64, rf).is_err());
        }
    }

    #[test]
    fn tiles_hold_the_level_hashes(d in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4), 1..700)) {
        let t = build(&d);
        let n = d.len() as u64;
        let tiles = t.tiles(n).unwrap();
        // Level-0 tiles are the leaf hashes, 256 a tile, the last one partial.
        let level0: Vec<u8> = tiles.iter().filter(|(t, _)| t.level() == 0).flat_map(|(_, data)| data.clone()).collect();
        let expected: Vec<u8> = d.iter().flat_map(|l| leaf_hash(l)).collect();
        prop_assert_eq!(level0, expected);
        // Level-1 tiles hold the roots of each full 256-leaf subtree.
        let level1: Vec<u8> = tiles.iter().filter(|(t, _)| t.level() == 1).flat_map(|(_, data)| data.clone()).collect();
        let full: Vec<u8> = d.chunks(256).filter(|c| c.len() == 256).flat_map(mth).collect();
        prop_assert_eq!(level1, full);
        for (tile, _) in &tiles {
            let p = tree::c2sp_path(tile);
            prop_assert_eq!(tree::parse_c2sp_path(&p), Some(*tile), "{}", p);
        }
    }
}

#[test]
fn tile_paths_follow_c2sp() {
    let t = tlog_tiles::Tile::new(8, 0, 1234067, 8, false);
    assert_eq!(tree::c2sp_path(&t), "tile/0/x001/x234/067.p/8");
    assert_eq!(
        tree::c2sp_path(&tlog_tiles::Tile::new(8, 1, 3, 256, false)),
        "tile/1/003"
    );
    assert!(tree::parse_c2sp_path("tile/data/000").is_none());
    assert!(tree::parse_c2sp_path("tile/0/000.p/256").is_none());
    assert!(tree::parse_c2sp_path("tile/0/../000").is_none());
}
