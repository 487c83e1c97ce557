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

/// Players one [`lookup_many`] names at most (the server refuses more than 1 024 subjects).
pub const MOST_AT_ONCE: usize = 256;

/// Why [`lookup_many`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupManyError {
    /// More players than [`MOST_AT_ONCE`].
    #[error("{0} players in one lookup, more than {MOST_AT_ONCE}")]
    TooMany(usize),
    /// The request could not be sent.
    #[error("cannot ask the bucket: {0}")]
    Send(String),
    /// The bucket answered with an error status (no responders, a malformed request, too many
    /// subjects), or cut its answer short.
    #[error("the bucket refused the lookup: {0}")]
    Refused(String),
    /// The answers stopped before their end marker.
    #[error("the bucket's answers ended early")]
    Ended,
}

/// What the bucket says of each of `players`, in one request: a direct get of each one's last
/// entry (`multi_last`, NATS 2.11 and later), answered as a run of messages closed by an end
/// marker. Each player maps to what [`lookup`] would say of it: `None` when the bucket has no
/// (readable) entry for it, or its entry was deleted. `client` must be the bucket's own
/// connection's client, with the default JetStream API prefix.
///
/// The request is sent after this is called, so it sees every entry written before: like
/// [`lookup`], never behind an outcome its caller was told of.
pub async fn lookup_many(
    client: &async_nats::Client,
    bucket: &Store,
    players: &[PlayerId],
) -> Result<std::collections::HashMap<PlayerId, Option<AvatarRegion>>, LookupManyError> {
    use futures::StreamExt;

    if players.len() > MOST_AT_ONCE {
        return Err(LookupManyError::TooMany(players.len()));
    }
    let mut found: std::collections::HashMap<PlayerId, Option<AvatarRegion>> =
        players.iter().map(|p| (*p, None)).collect();
    if found.is_empty() {
        return Ok(found);
    }
    let subjects: Vec<String> = found
        .keys()
        .map(|p| format!("{}{p}", bucket.prefix))
        .collect();
    let request = serde_json::json!({ "multi_last": subjects }).to_string();
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| LookupManyError::Send(e.to_string()))?;
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{}", bucket.stream_name),
            inbox,
            request.into(),
        )
        .await
        .map_err(|e| LookupManyError::Send(e.to_string()))?;
    while let Some(answer) = answers.next().await {
        let header = |name: &str| {
            answer
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        match answer.status.map(|s| s.as_u16()) {
            None => {}
            // The end marker: whatever it did not send is not in the bucket.
            Some(204) => {
                return match header("Nats-Num-Pending").as_deref() {
                    None | Some("0") => Ok(found),
                    Some(pending) => Err(LookupManyError::Refused(format!(
                        "{pending} entries left unsent"
                    ))),
                };
            }
            // None of the players has an entry.
            Some(404) => return Ok(found),
            Some(status) => {
                let why = answer.description.as_deref().unwrap_or("no description");
                return Err(LookupManyError::Refused(format!("{status} {why}")));
            }
        }
        let Some(player) = header("Nats-Subject")
            .as_deref()
            .and_then(|s| s.strip_prefix(bucket.prefix.as_str()))
            .and_then(|key| key.parse::<PlayerId>().ok())
            .filter(|p| found.contains_key(p))
        else {
            tracing::warn!("an avatar_regions answer for a player not asked about; ignored");
            continue;
        };
        let removed = matches!(header("KV-Operation").as_deref(), Some("DEL" | "PURGE"))
            || header("Nats-Marker-Reason").is_some();
        if removed {
            continue;
        }
        match AvatarRegion::decode(&answer.payload) {
            Ok(entry) => {
                found.insert(player, Some(entry));
            }
            Err(e) => {
                tracing::warn!(player = %player, error = %e, "an unreadable avatar_regions entry; ignored");
            }
        }
    }
    Err(LookupManyError::Ended)
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
