//! Arrivals and departures: a spawn (back with what the avatar had when it last left), a
//! respawn after death, leaving or being kicked (taking the progress along), and an entity
//! handed over from a neighbouring region.

use schemas::command::{AcceptHandOff, Kick};
use schemas::fact::{HandedOffIn, LeaveReason, Left, Progress, Respawned, Spawned};
use schemas::{EntityKind, EntityState, EventId, Fact, Position, RejectReason};

use crate::components::{Combat, Elsewhere, Health, Ident, Key, Returning};
use crate::decide::{Decision, Facts, reject};
use crate::ecs_fold::{entity_state, key_of};

impl Facts<'_> {
    /// Where avatars appear: near the region's centre, spread a little by the command id so a
    /// crowd spawning at once does not stand on one point.
    fn spawn_point(&self, seed: EventId) -> Position {
        let rules = self.rules();
        let b = rules.region.bounds;
        let bytes = seed.as_uuid().as_bytes();
        let spread = |byte: u8| (f64::from(byte) / 255.0 - 0.5) * 20.0;
        rules.clamp(Position::new(
            (b.min.x + b.max.x) / 2.0 + spread(bytes[14]),
            (b.min.y + b.max.y) / 2.0 + spread(bytes[15]),
        ))
    }

    pub(super) fn spawn(&mut self, player: schemas::PlayerId, command: EventId) -> Decision {
        let me = schemas::EntityId::from(player);
        if key_of(self.world, me).is_some() {
            return reject(
                RejectReason::AlreadySpawned,
                "your avatar is already in the world",
            );
        }
        let there = self
            .world
            .get_unique::<&Elsewhere>()
            .ok()
            .and_then(|e| e.0.get(&player).cloned());
        if let Some(there) = there {
            // Named here with no avatar here: on its way in by a hand-off.
            let why = if there == self.rules().region.id {
                format!("your avatar is on its way into {there}")
            } else {
                format!("your avatar is already in the world, in {there}")
            };
            return reject(RejectReason::AlreadySpawned, why);
        }
        let rules = self.rules();
        let players = self
            .world
            .iter::<&Ident>()
            .into_iter()
            .filter(|i| i.kind == EntityKind::Player)
            .count();
        if players >= rules.region.capacity as usize {
            return reject(
                RejectReason::RegionFull,
                format!("{} holds {} players already", rules.region.id, players),
            );
        }
        // Back with what it had when it last left, if it has been in the world before.
        let progress = self
            .world
            .get_unique::<&mut Returning>()
            .ok()
            .and_then(|mut r| r.0.remove(&player))
            .unwrap_or(Progress {
                level: 1,
                xp: 0,
                inventory: vec![],
            });
        let max_hp = rules.balance.max_hp(progress.level);
        self.emit(Fact::Spawned(Spawned {
            state: EntityState {
                id: me,
                kind: EntityKind::Player,
                player: Some(player),
                position: self.spawn_point(command),
                destination: None,
                hp: max_hp,
                max_hp,
                level: progress.level,
                xp: progress.xp,
                inventory: progress.inventory,
                alive: true,
            },
        }));
        Ok(())
    }

    pub(super) fn respawn(&mut self, key: Key, me: schemas::EntityId) -> Decision {
        if self.alive(key) {
            return reject(RejectReason::NotDead, "you are alive");
        }
        let rules = self.rules();
        let wait_ms = (rules.balance.respawn_secs * 1000.0) as i64;
        let died = self
            .world
            .get::<&Combat>(key)
            .ok()
            .and_then(|c| c.died_at_ms);
        if let Some(died) = died
            && self.now_ms - died < wait_ms
        {
            return reject(
                RejectReason::RespawnNotReady,
                format!("you may respawn in {} ms", wait_ms - (self.now_ms - died)),
            );
        }
        let hp = self
            .world
            .get::<&Health>(key)
            .map(|h| h.max_hp)
            .unwrap_or(1);
        let position =
            self.spawn_point(EventId::named(rules.region.id.as_str(), &me.to_string(), 0));
        self.emit(Fact::Respawned(Respawned {
            entity: me,
            position,
            hp,
        }));
        Ok(())
    }

    pub(super) fn leave(
        &mut self,
        key: Key,
        me: schemas::EntityId,
        reason: LeaveReason,
    ) -> Decision {
        let position = self.position(key);
        let progress = entity_state(self.world, key).map(|s| Progress {
            level: s.level,
            xp: s.xp,
            inventory: s.inventory,
        });
        // A spawn later in this same tick comes back with it.
        if let (Some(p), Ok(mut returning)) = (&progress, self.world.get_unique::<&mut Returning>())
        {
            returning
                .0
                .insert(schemas::PlayerId::from_uuid(*me.as_uuid()), p.clone());
        }
        self.emit(Fact::Left(Left {
            entity: me,
            reason,
            position,
            progress,
        }));
        Ok(())
    }

    pub(super) fn kick(&mut self, k: &Kick) -> Decision {
        let id = schemas::EntityId::from(k.player);
        let Some(key) = key_of(self.world, id) else {
            return reject(
                RejectReason::TargetNotFound,
                "that player is not in this region",
            );
        };
        self.leave(key, id, LeaveReason::Kicked)
    }

    pub(super) fn accept_hand_off(&mut self, h: &AcceptHandOff) -> Decision {
        if key_of(self.world, h.state.id).is_some() {
            return reject(RejectReason::AlreadySpawned, "the entity is already here");
        }
        self.emit(Fact::HandedOffIn(HandedOffIn {
            state: h.state.clone(),
            from_region: h.from_region.clone(),
        }));
        Ok(())
    }
}
