//! The RFC 6962 Merkle tree hash (Certificate Transparency, §2.1) over a period's item hashes.

use sha2::{Digest, Sha256};

use crate::ProofError;

/// RFC 6962 Merkle tree hash over leaves given as lowercase hex SHA-256 digests, in order:
/// leaf = SHA-256(0x00 ‖ 32 digest bytes), node = SHA-256(0x01 ‖ left ‖ right), split at the
/// largest power of two smaller than n; empty = SHA-256(""). Returns lowercase hex.
///
/// Errors with [`ProofError::BadLeaf`] for a leaf that is not 64 hex characters.
pub fn merkle_root(leaf_hashes: &[String]) -> Result<String, ProofError> {
    let leaves = leaf_hashes
        .iter()
        .enumerate()
        .map(|(index, h)| {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(h, &mut bytes).map_err(|_| ProofError::BadLeaf {
                index,
                value: h.clone(),
            })?;
            Ok(leaf(&bytes))
        })
        .collect::<Result<Vec<[u8; 32]>, ProofError>>()?;
    let root = match leaves.is_empty() {
        true => Sha256::digest([]).into(),
        false => tree(&leaves),
    };
    Ok(hex::encode(root))
}

fn leaf(digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(digest);
    h.finalize().into()
}

/// MTH of one or more leaf hashes.
fn tree(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [one] => *one,
        _ => {
            // The largest power of two smaller than n (n ≥ 2): the largest one ≤ n − 1.
            let split = 1usize << (leaves.len() - 1).ilog2();
            let (left, right) = leaves.split_at(split);
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(tree(left));
            h.update(tree(right));
            h.finalize().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> Vec<u8> {
        Sha256::digest(bytes).to_vec()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// The item hashes `d0..d4` and their leaves, written out.
    fn digests(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| sha(format!("item {i}").as_bytes()))
            .collect()
    }

    fn hexes(d: &[Vec<u8>]) -> Vec<String> {
        d.iter().map(hex::encode).collect()
    }

    /// RFC 6962 §2.1, as the RFC words it, on leaf data (here: the 32 digest bytes).
    fn reference(d: &[Vec<u8>]) -> Vec<u8> {
        match d.len() {
            0 => sha(b""),
            1 => sha(&cat(&[&[0x00], &d[0]])),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                sha(&cat(&[&[0x01], &reference(&d[..k]), &reference(&d[k..])]))
            }
        }
    }

    #[test]
    fn empty_is_the_hash_of_nothing() {
        assert_eq!(
            merkle_root(&[]).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn small_trees_by_hand() {
        let d = digests(5);
        let l: Vec<Vec<u8>> = d.iter().map(|x| sha(&cat(&[&[0x00], x]))).collect();
        let node = |a: &[u8], b: &[u8]| sha(&cat(&[&[0x01], a, b]));

        // 1: the leaf hash itself.
        assert_eq!(merkle_root(&hexes(&d[..1])).unwrap(), hex::encode(&l[0]));
        // 2: one node.
        assert_eq!(
            merkle_root(&hexes(&d[..2])).unwrap(),
            hex::encode(node(&l[0], &l[1]))
        );
        // 3: split 2 | 1.
        assert_eq!(
            merkle_root(&hexes(&d[..3])).unwrap(),
            hex::encode(node(&node(&l[0], &l[1]), &l[2]))
        );
        // 5: split 4 | 1.
        let four = node(&node(&l[0], &l[1]), &node(&l[2], &l[3]));
        assert_eq!(
            merkle_root(&hexes(&d)).unwrap(),
            hex::encode(node(&four, &l[4]))
        );
    }

    #[test]
    fn any_size_matches_the_reference() {
        for n in 0..40 {
            let d = digests(n);
            assert_eq!(
                merkle_root(&hexes(&d)).unwrap(),
                hex::encode(reference(&d)),
                "{n} leaves"
            );
        }
    }

    #[test]
    fn a_leaf_must_be_a_digest() {
        for bad in ["abc", "zz", &"g".repeat(64), &"a".repeat(66)] {
            let leaves = vec!["00".repeat(32), bad.to_string()];
            match merkle_root(&leaves) {
                Err(ProofError::BadLeaf { index: 1, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
