//! The `avatar_regions` bucket: the region each player's avatar is in, as the simulators decided
//! it. A region writes the entry before it stores the fact that put the avatar there (see
//! [`schemas::fold::avatar_region`]), so a gateway that routes a player's command by it sends the
//! command where the last outcome the player was told of put the avatar, whatever the read
//! models say yet. A region about to apply a spawn claims the entry by its revision first, so
//! that two spawns sent at once to two regions place one avatar.

use async_nats::jetstream::kv::Store;
use schemas::{PlayerId, RegionId};
use serde::{Deserialize, Serialize};

/// One player's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvatarRegion {
    /// The region, or `None` once the avatar has left the world.
    pub region: Option<RegionId>,
}

impl AvatarRegion {
    /// The entry as stored.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of one optional, validated string always encodes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An entry read back; anything but a well-formed entry is an error (the bucket is not
    /// trusted more than the rest of the bus).
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Writes `player`'s entry, as a simulator does before it stores the fact behind it; the
/// entry's revision.
pub async fn record(
    bucket: &Store,
    player: PlayerId,
    entry: &AvatarRegion,
) -> Result<u64, async_nats::jetstream::kv::PutError> {
    bucket.put(player.to_string(), entry.encode().into()).await
}

/// What the bucket says of a player: `Ok(None)` when it has no (readable) entry for it, so that
/// the caller falls back on the read models; `Err` when the bucket did not answer.
pub async fn lookup(
    bucket: &Store,
    player: PlayerId,
) -> Result<Option<AvatarRegion>, async_nats::jetstream::kv::EntryError> {
    let Some(bytes) = bucket.get(player.to_string()).await? else {
        return Ok(None);
    };
    match AvatarRegion::decode(&bytes) {
        Ok(entry) => Ok(Some(entry)),
        Err(e) => {
            tracing::warn!(player = %player, error = %e, "an unreadable avatar_regions entry; ignored");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_anything_else_is_refused() {
        for entry in [
            AvatarRegion {
                region: Some(RegionId::new("south-west").expect("a region id")),
            },
            AvatarRegion { region: None },
        ] {
            assert_eq!(
                AvatarRegion::decode(&entry.encode()).expect("decodes"),
                entry
            );
        }
        for bad in [
            &b""[..],
            b"null",
            b"\"south-west\"",
            b"{\"region\": \"South West!\"}",
            b"{\"region\": \"south-west\", \"extra\": 1}",
            b"{\"region\": 7}",
            b"\xff\xfe",
        ] {
            assert!(AvatarRegion::decode(bad).is_err(), "{bad:?}");
        }
    }
}
