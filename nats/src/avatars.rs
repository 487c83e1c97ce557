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
    /// The avatar is on its way into `region`: its source has handed it off and `region` has not
    /// taken it in yet, so no avatar is there. A spawn there waits for it rather than place a
    /// second avatar, whose older progress the arrival would then be refused for. Written only
    /// when true, so that an entry of a region not on its way reads as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arriving: bool,
}

impl AvatarRegion {
    /// An avatar in `region`, or out of the world (`None`).
    pub fn at(region: Option<RegionId>) -> Self {
        Self {
            region,
            arriving: false,
        }
    }

    /// An avatar handed off to `region`, not yet taken in there.
    pub fn arriving_in(region: RegionId) -> Self {
        Self {
            region: Some(region),
            arriving: true,
        }
    }

    /// The entry a stored fact leaves for its player, when it changes that (see
    /// [`schemas::fold::avatar_region`]): a hand-off out leaves the avatar arriving in the region
    /// it goes to.
    pub fn after(fact: &schemas::Envelope<schemas::Fact>) -> Option<(PlayerId, Self)> {
        let (player, region) = schemas::fold::avatar_region(fact)?;
        let entry = match (&fact.payload, region) {
            (schemas::Fact::HandedOffOut(_), Some(to)) => Self::arriving_in(to),
            (_, region) => Self::at(region),
        };
        Some((player, entry))
    }

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
            AvatarRegion::at(Some(RegionId::new("south-west").expect("a region id"))),
            AvatarRegion::arriving_in(RegionId::new("east").expect("a region id")),
            AvatarRegion::at(None),
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
            b"{\"region\": \"east\", \"arriving\": \"yes\"}",
            b"{\"region\": \"east\", \"arriving\": 1}",
            b"\xff\xfe",
        ] {
            assert!(AvatarRegion::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_entry_written_before_arrivals_reads_as_not_arriving_and_is_written_alike() {
        let old = AvatarRegion::decode(br#"{"region":"west"}"#).expect("an older entry");
        assert_eq!(
            old,
            AvatarRegion::at(Some(RegionId::new("west").expect("a region id")))
        );
        assert_eq!(old.encode(), br#"{"region":"west"}"#);
    }

    #[test]
    fn a_hand_off_out_leaves_the_avatar_arriving_and_its_arrival_places_it() {
        use schemas::fact::{HandedOffIn, HandedOffOut};
        use schemas::{Actor, EntityState, Envelope, Fact, Position};
        let player = PlayerId::new();
        let (west, east) = (
            RegionId::new("west").expect("a region id"),
            RegionId::new("east").expect("a region id"),
        );
        let state = EntityState::newcomer(player, Position::new(1.0, 1.0), 100);
        let sim = || Actor::System {
            service: "region-sim".into(),
        };
        let out = Envelope::new(
            sim(),
            Some(west),
            Fact::HandedOffOut(HandedOffOut {
                state: state.clone(),
                to_region: east.clone(),
            }),
        );
        assert_eq!(
            AvatarRegion::after(&out),
            Some((player, AvatarRegion::arriving_in(east.clone())))
        );
        let arrived = Envelope::new(
            sim(),
            Some(east.clone()),
            Fact::HandedOffIn(HandedOffIn {
                state,
                from_region: RegionId::new("west").expect("a region id"),
            }),
        );
        assert_eq!(
            AvatarRegion::after(&arrived),
            Some((player, AvatarRegion::at(Some(east))))
        );
    }
}
