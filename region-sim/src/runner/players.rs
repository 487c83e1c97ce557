//! What is kept of players beside the log, in JetStream KV: the progress an avatar takes with
//! it when it leaves (read back when its player spawns again), and the region each avatar is in
//! (for the gateway's routing). Both are retried until stored before the facts that call for
//! them are.

use std::collections::HashMap;

use nats_topology::avatars::{self, AvatarRegion};
use schemas::{Actor, Command, Envelope, Fact, PlayerId};
use tracing::error;

use super::{Backoff, Running};

impl Running {
    /// Gives the region what each player spawning in `commands` had when it last left.
    pub(super) async fn look_up_returning(&mut self, commands: &[Envelope<Command>]) {
        for cmd in commands {
            let (Command::Spawn(_), Actor::Player { id }) = (&cmd.payload, &cmd.actor) else {
                continue;
            };
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
    pub(super) async fn keep_avatar_regions(&self, facts: &[Envelope<Fact>]) {
        let mut latest: HashMap<PlayerId, AvatarRegion> = HashMap::new();
        for f in facts {
            if let Some((player, region)) = schemas::fold::avatar_region(f) {
                latest.insert(player, AvatarRegion { region });
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
