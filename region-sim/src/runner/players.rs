//! What is kept of players beside the log, in JetStream KV: the progress an avatar takes with
//! it when it leaves (read back when its player spawns again), and the region each avatar is in
//! (for the gateway's routing, and claimed by a spawn so that an avatar is in one region). Both
//! are retried until stored before the facts that call for them are.

use std::collections::HashMap;

use async_nats::jetstream::kv::{CreateErrorKind, Operation, UpdateErrorKind};
use chrono::Utc;
use nats_topology::avatars::{self, AvatarRegion};
use schemas::{Actor, Command, Envelope, Fact, PlayerId};
use tracing::error;

use super::{Backoff, Running};

impl Running {
    /// Gives the region what each player spawning in `commands` had when it last left.
    ///
    /// First each spawning player's avatar is claimed for this region in `avatar_regions`, by
    /// compare-and-set: a player whose entry names another region is in the world there, and
    /// its spawn is refused here. Two spawns sent at once to two regions thus place one avatar,
    /// not two, each with the same progress. A spawn whose avatar is on its way here by a
    /// hand-off is refused too: the arrival brings the avatar with what it carries now. Returns
    /// the entries this region claimed and what they said before, for
    /// [`Running::keep_avatar_regions`] to give back when the spawn is refused for another
    /// reason.
    pub(super) async fn prepare_spawns(
        &mut self,
        commands: &[Envelope<Command>],
    ) -> HashMap<PlayerId, AvatarRegion> {
        let mut claimed = HashMap::new();
        for cmd in commands {
            let (Command::Spawn(_), Actor::Player { id }) = (&cmd.payload, &cmd.actor) else {
                continue;
            };
            if claimed.contains_key(id) {
                continue;
            }
            match self.claim(*id).await {
                Claim::Elsewhere(region) => {
                    self.region.elsewhere(*id, region);
                    continue;
                }
                Claim::Ours => {}
                Claim::Taken { before } => {
                    claimed.insert(*id, before);
                }
            }
            let key = id.to_string();
            let mut backoff = Backoff::new();
            let found = loop {
                match self.shared.progress.get(&key).await {
                    Ok(found) => break found,
                    // Spawning without it would lose the player's progress: wait for the bus.
                    Err(e) => {
                        self.bus_error("progress_get", &e);
                        backoff.wait().await;
                    }
                }
            };
            let Some(bytes) = found else { continue };
            match serde_json::from_slice::<schemas::fact::Progress>(bytes.as_ref()) {
                Ok(progress) => match self.admission.check_progress(&progress) {
                    Ok(()) => self.region.returning(*id, progress),
                    // Tampered with, or written under other rules: the avatar starts afresh
                    // rather than with what the rules do not allow.
                    Err(why) => {
                        error!(region = %self.id, player = %id, reason = why, "stored progress refused")
                    }
                },
                Err(e) => {
                    error!(region = %self.id, player = %id, error = %e, "stored progress unreadable")
                }
            }
        }
        claimed
    }

    /// Claims `player`'s entry in `avatar_regions` for this region unless it names another;
    /// retried until the bucket answers.
    async fn claim(&self, player: PlayerId) -> Claim {
        let bucket = &self.shared.avatars;
        let key = player.to_string();
        let ours = AvatarRegion::at(Some(self.id.clone()));
        let mut backoff = Backoff::new();
        loop {
            let entry = match bucket.entry(key.clone()).await {
                Ok(entry) => entry,
                Err(e) => {
                    self.bus_error("avatar_region_get", &e);
                    backoff.wait().await;
                    continue;
                }
            };
            let live = entry
                .as_ref()
                .filter(|e| e.operation == Operation::Put)
                // An unreadable entry says nothing: it is claimed over, as an empty one.
                .and_then(|e| AvatarRegion::decode(&e.value).ok());
            let before = match live {
                Some(AvatarRegion {
                    region: Some(region),
                    arriving,
                }) if region == self.id => {
                    // Naming this region with no avatar here, and written longer ago than any
                    // command behind it can still be delivered (a claim whose spawn was never
                    // stored, a hand-off whose accept was dead-lettered), it is stale: claimed
                    // over as an empty entry, so that a spawn refused here gives it back and
                    // the player may spawn elsewhere.
                    let absent = !self.region.holds(player);
                    let stale = absent
                        && entry
                            .as_ref()
                            .is_some_and(|e| Utc::now() - e.created >= self.claim_lapse());
                    if !stale {
                        // Handed off here and not taken in yet: the avatar arrives with its
                        // hand-off, and a spawn now would place a second one.
                        if arriving && absent {
                            return Claim::Elsewhere(region);
                        }
                        return Claim::Ours;
                    }
                    AvatarRegion::at(None)
                }
                Some(AvatarRegion {
                    region: Some(region),
                    ..
                }) => return Claim::Elsewhere(region),
                _ => AvatarRegion::at(None),
            };
            // The error says whether another region wrote the entry first.
            let written = match &entry {
                Some(found) => bucket
                    .update(&key, ours.encode().into(), found.revision)
                    .await
                    .map_err(|err| {
                        let lost = err.kind() == UpdateErrorKind::WrongLastRevision;
                        (lost, err.to_string())
                    }),
                None => bucket
                    .create(&key, ours.encode().into())
                    .await
                    .map_err(|err| {
                        let lost = err.kind() == CreateErrorKind::AlreadyExists;
                        (lost, err.to_string())
                    }),
            };
            match written {
                Ok(_) => return Claim::Taken { before },
                // Read again what the other region wrote.
                Err((true, _)) => {}
                Err((false, why)) => {
                    self.bus_error("avatar_region_claim", &why);
                    backoff.wait().await;
                }
            }
        }
    }

    /// How long a command can still come after its first delivery: its every delivery's
    /// `ack_wait`.
    fn claim_lapse(&self) -> chrono::Duration {
        let s = &self.shared.settings;
        let lapse = s
            .ack_wait
            .saturating_mul(u32::try_from(s.max_deliver).unwrap_or(u32::MAX));
        chrono::Duration::from_std(lapse).unwrap_or(chrono::Duration::MAX)
    }

    /// Stores the progress carried by the `left` facts among `facts`, retrying until stored.
    pub(super) async fn keep_progress(&self, facts: &[Envelope<Fact>]) {
        for f in facts {
            let Fact::Left(left) = &f.payload else {
                continue;
            };
            let Some(progress) = &left.progress else {
                continue;
            };
            let Ok(body) = serde_json::to_vec(progress) else {
                continue;
            };
            let key = left.entity.to_string();
            let mut backoff = Backoff::new();
            while let Err(e) = self.shared.progress.put(&key, body.clone().into()).await {
                self.bus_error("progress_put", &e);
                backoff.wait().await;
            }
        }
    }

    /// Records where the `facts` leave each avatar they move into, out of or across regions,
    /// retrying until every entry is stored. The entries are written together; a player moved
    /// twice in one tick gets the last.
    ///
    /// An entry claimed by [`Running::prepare_spawns`] whose spawn was refused gets back what it
    /// said before.
    pub(super) async fn keep_avatar_regions(
        &self,
        facts: &[Envelope<Fact>],
        claimed: HashMap<PlayerId, AvatarRegion>,
    ) {
        // A claimed entry whose spawn was refused: as it was, or naming this region when the
        // avatar is here (refused as `already_spawned`, its entry missing or unreadable).
        let mut latest: HashMap<PlayerId, AvatarRegion> = claimed
            .into_iter()
            .map(|(player, before)| {
                let here = self
                    .region
                    .holds(player)
                    .then(|| AvatarRegion::at(Some(self.id.clone())));
                (player, here.unwrap_or(before))
            })
            .collect();
        for f in facts {
            if let Some((player, entry)) = AvatarRegion::after(f) {
                latest.insert(player, entry);
            }
        }
        let mut pending: Vec<(PlayerId, AvatarRegion)> = latest.into_iter().collect();
        let mut backoff = Backoff::new();
        while !pending.is_empty() {
            let results = futures::future::join_all(
                pending
                    .iter()
                    .map(|(player, entry)| avatars::record(&self.shared.avatars, *player, entry)),
            )
            .await;
            let mut failed = Vec::new();
            for (entry, result) in pending.into_iter().zip(results) {
                if let Err(e) = result {
                    self.bus_error("avatar_region_put", &e);
                    failed.push(entry);
                }
            }
            pending = failed;
            if !pending.is_empty() {
                backoff.wait().await;
            }
        }
    }
}

/// What `avatar_regions` said of a spawning player, once asked.
enum Claim {
    /// Its avatar is in another region, or on its way into this one.
    Elsewhere(schemas::RegionId),
    /// The entry named this region already.
    Ours,
    /// This region wrote its name over `before`.
    Taken { before: AvatarRegion },
}
