//! Stable shard assignment: a Secret's shard is a hash of its uid, so it does not move
//! when other Secrets come and go or when names are reused.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const MAX_COUNT: u32 = 1024;

    /// Parses `I/N` with `0 <= I < N <= 1024`.
    pub fn parse(text: &str) -> Result<Shard> {
        let invalid = || {
            Error::Usage(format!(
                "--shard {text:?}: expected I/N with 0 <= I < N <= {}",
                Self::MAX_COUNT
            ))
        };
        let (index, count) = text.split_once('/').ok_or_else(invalid)?;
        let index: u32 = index.trim().parse().map_err(|_| invalid())?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 || count > Self::MAX_COUNT || index >= count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }

    pub fn of(uid: &str, count: u32) -> u32 {
        let digest = Sha256::digest(uid.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        (head % u64::from(count)) as u32
    }

    pub fn contains(&self, uid: &str) -> bool {
        Self::of(uid, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uid_lands_in_exactly_one_shard() {
        for n in 1..=7 {
            let uid = format!("uid-{n}");
            let owners = (0..n)
                .filter(|i| {
                    Shard {
                        index: *i,
                        count: n,
                    }
                    .contains(&uid)
                })
                .count();
            assert_eq!(owners, 1);
        }
    }

    #[test]
    fn shards_spread_uids() {
        let counts = (0..4000).fold([0u32; 4], |mut acc, i| {
            acc[Shard::of(&format!("uid-{i}"), 4) as usize] += 1;
            acc
        });
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "0/0", "x/2", "1", "-1/2", "1/2000"] {
            assert_eq!(
                Shard::parse(bad).unwrap_err().exit_status().code(),
                2,
                "{bad}"
            );
        }
    }

    #[test]
    fn up_to_1024_shards_named_as_parsed() {
        let last = Shard::parse("1023/1024").unwrap();
        assert_eq!(last.to_string(), "1023/1024");
        assert!(Shard::parse("0/1025").is_err());
        assert_eq!(Shard::parse(" 0 / 1 ").unwrap().to_string(), "0/1");
        assert!(Shard::parse("0/1").unwrap().contains("any-uid"));
    }
}
