//! What each command does: the rules that turn a command into facts, decided against the
//! region's world as it stands when the command's turn comes. Every fact decided is folded in at
//! once (through [`crate::ecs_fold::apply`]), so a command later in the same tick sees it: that is
//! how the first of two pickups of one item wins and the second is rejected. The combat
//! commands' rules are in [`crate::combat`].

use schemas::command::{AcceptHandOff, Chat, Kick, Pickup};
use schemas::fact::{
    ChatSaid, HandedOffIn, ItemPicked, LeaveReason, Left, MovementStarted, Progress, Rejected,
    Respawned, Spawned,
};
use schemas::{
    Actor, Command, EntityKind, EntityState, Envelope, EventId, Fact, Position, RejectReason,
};
use shipyard::World;

use crate::components::{Combat, Health, Ident, Key, Returning};
use crate::decide::{Decision, Facts, reject};
use crate::ecs_fold::{entity_state, item_on_ground, key_of};

/// Decides and applies what `cmd` does at `now_ms`; every command ends in at least one fact
/// (a [`Fact::Rejected`] when it could not be applied).
pub fn handle(world: &mut World, cmd: &Envelope<Command>, now_ms: i64) -> Vec<Fact> {
    let mut out = Facts::new(world, now_ms);
    let kind = cmd.payload.kind();
    if let Err((reason, message)) = out.decide(cmd) {
        out.facts.push(Fact::Rejected(Rejected {
            command: kind,
            reason,
            message,
        }));
    }
    out.facts
}

impl Facts<'_> {
    fn decide(&mut self, cmd: &Envelope<Command>) -> Decision {
        if let Command::AcceptHandOff(h) = &cmd.payload {
            return self.accept_hand_off(h);
        }
        if let Command::Kick(k) = &cmd.payload {
            return self.kick(k);
        }
        if let Command::Strike(s) = &cmd.payload {
            return self.struck(s);
        }
        if let Command::Reward(r) = &cmd.payload {
            return self.reward(r);
        }
        let player = match &cmd.actor {
            Actor::Player { id } | Actor::Admin { id } => *id,
            Actor::System { service } => {
                return reject(
                    RejectReason::InvalidTarget,
                    format!("{service} has no avatar to act for"),
                );
            }
        };
        let me = schemas::EntityId::from(player);
        if let Command::Spawn(_) = &cmd.payload {
            return self.spawn(player, cmd.id);
        }
        let Some(key) = key_of(self.world, me) else {
            return reject(
                RejectReason::NotSpawned,
                "you have no avatar in this region",
            );
        };
        match &cmd.payload {
            Command::Move(m) => self.walk(key, me, Position::new(m.x, m.y)),
            Command::Attack(a) => self.attack(key, me, a, cmd.id),
            Command::Chat(c) => self.chat(key, me, c),
            Command::Pickup(p) => self.pickup(key, me, p),
            Command::Respawn(_) => self.respawn(key, me),
            Command::Leave(_) => self.leave(key, me, LeaveReason::Requested),
            Command::Spawn(_)
            | Command::Kick(_)
            | Command::AcceptHandOff(_)
            | Command::Strike(_)
            | Command::Reward(_) => Ok(()),
        }
    }

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

    fn spawn(&mut self, player: schemas::PlayerId, command: EventId) -> Decision {
        let me = schemas::EntityId::from(player);
        if key_of(self.world, me).is_some() {
            return reject(
                RejectReason::AlreadySpawned,
                "your avatar is already in the world",
            );
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

    fn walk(&mut self, key: Key, me: schemas::EntityId, to: Position) -> Decision {
        if !self.alive(key) {
            return reject(RejectReason::Dead, "the dead do not walk");
        }
        if self.rules().world.region_at(&to).is_none() {
            return reject(RejectReason::Unreachable, "that point is outside the world");
        }
        let from = self.position(key);
        self.emit(Fact::MovementStarted(MovementStarted {
            entity: me,
            from,
            destination: to,
        }));
        Ok(())
    }

    fn chat(&mut self, key: Key, me: schemas::EntityId, c: &Chat) -> Decision {
        let position = self.position(key);
        self.emit(Fact::ChatSaid(ChatSaid {
            entity: me,
            channel: c.channel(),
            text: c.text.clone(),
            position,
        }));
        Ok(())
    }

    fn pickup(&mut self, key: Key, me: schemas::EntityId, p: &Pickup) -> Decision {
        if !self.alive(key) {
            return reject(RejectReason::Dead, "the dead do not pick things up");
        }
        let Some(item_key) = key_of(self.world, p.item) else {
            return reject(
                RejectReason::ItemGone,
                "no such item lies here (someone may have picked it up first)",
            );
        };
        let Some((item, at)) = item_on_ground(self.world, item_key) else {
            return reject(RejectReason::InvalidTarget, "that is not an item");
        };
        let rules = self.rules();
        let distance = self.position(key).distance(&at);
        if distance > rules.balance.pickup_range {
            return reject(
                RejectReason::OutOfRange,
                format!(
                    "the item is {distance:.1} away; you reach {}",
                    rules.balance.pickup_range
                ),
            );
        }
        let carried = entity_state(self.world, key).map_or(0, |s| s.inventory.len());
        if carried >= rules.balance.inventory_slots as usize {
            return reject(RejectReason::InventoryFull, "your inventory is full");
        }
        self.emit(Fact::ItemPicked(ItemPicked { entity: me, item }));
        Ok(())
    }

    fn respawn(&mut self, key: Key, me: schemas::EntityId) -> Decision {
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

    fn leave(&mut self, key: Key, me: schemas::EntityId, reason: LeaveReason) -> Decision {
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

    fn kick(&mut self, k: &Kick) -> Decision {
        let id = schemas::EntityId::from(k.player);
        let Some(key) = key_of(self.world, id) else {
            return reject(
                RejectReason::TargetNotFound,
                "that player is not in this region",
            );
        };
        self.leave(key, id, LeaveReason::Kicked)
    }

    fn accept_hand_off(&mut self, h: &AcceptHandOff) -> Decision {
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
