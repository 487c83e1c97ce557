//! What each command does: the rules that turn a command into facts, decided against the
//! region's world as it stands when the command's turn comes. Every fact decided is folded in at
//! once (through [`crate::ecs_fold::apply`]), so a command later in the same tick sees it: that is
//! how the first of two pickups of one item wins and the second is rejected.

use schemas::command::{AcceptHandOff, Attack, Chat, Kick, Pickup, Reward, Strike};
use schemas::fact::{
    ChatSaid, Damaged, Died, HandedOffIn, ItemPicked, LeaveReason, Left, MovementStarted, NpcDied,
    Progress, Rejected, Respawned, RewardSent, Spawned, StruckAcross, XpGained,
};
use schemas::{
    Actor, Command, EntityKind, EntityState, Envelope, EventId, Fact, Position, RejectReason,
};
use shipyard::World;

use crate::components::{Combat, Health, Ident, Key, Npc, Pos, Returning, Rules};
use crate::ecs_fold::{self, entity_state, item_on_ground, key_of};

/// Decides and applies what `cmd` does at `now_ms`; every command ends in at least one fact
/// (a [`Fact::Rejected`] when it could not be applied).
pub fn handle(world: &mut World, cmd: &Envelope<Command>, now_ms: i64) -> Vec<Fact> {
    let mut out = Facts {
        world,
        now_ms,
        facts: Vec::new(),
    };
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

type Decision = Result<(), (RejectReason, String)>;

fn reject(reason: RejectReason, message: impl Into<String>) -> Decision {
    Err((reason, message.into()))
}

struct Facts<'w> {
    world: &'w mut World,
    now_ms: i64,
    facts: Vec<Fact>,
}

impl Facts<'_> {
    fn emit(&mut self, fact: Fact) {
        ecs_fold::apply(self.world, &fact, self.now_ms);
        self.facts.push(fact);
    }

    fn rules(&self) -> Rules {
        self.world
            .get_unique::<&Rules>()
            .map(|r| r.clone())
            .expect("a region world always has its rules")
    }

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

    fn alive(&self, key: Key) -> bool {
        self.world
            .get::<&Health>(key)
            .map(|h| h.alive)
            .unwrap_or(false)
    }

    fn position(&self, key: Key) -> Position {
        self.world
            .get::<&Pos>(key)
            .map(|p| p.0)
            .unwrap_or(Position::new(0.0, 0.0))
    }

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

    fn attack(
        &mut self,
        key: Key,
        me: schemas::EntityId,
        a: &Attack,
        command: EventId,
    ) -> Decision {
        if !self.alive(key) {
            return reject(RejectReason::Dead, "the dead do not fight");
        }
        if a.target == me {
            return reject(RejectReason::InvalidTarget, "you cannot attack yourself");
        }
        let rules = self.rules();
        let attack = &rules.balance.attack;
        let Some(target) = key_of(self.world, a.target) else {
            return self.strike_across(key, me, a, command);
        };
        if self.world.get::<&Ident>(target).is_err() {
            return reject(RejectReason::InvalidTarget, "items cannot be attacked");
        }
        if !self.alive(target) {
            return reject(RejectReason::TargetDead, "the target is already dead");
        }
        let distance = self.position(key).distance(&self.position(target));
        if distance > attack.range {
            return reject(
                RejectReason::OutOfRange,
                format!(
                    "the target is {distance:.1} away; attacks reach {}",
                    attack.range
                ),
            );
        }
        self.cooled_down(key)?;
        strike(self, key, target, damage(command, attack));
        Ok(())
    }

    /// An attack is ready when the attacker's cooldown has passed.
    fn cooled_down(&self, key: Key) -> Decision {
        let cooldown_ms = self.rules().balance.attack.cooldown_ms as i64;
        let last = self
            .world
            .get::<&Combat>(key)
            .ok()
            .and_then(|c| c.last_attack_ms);
        match last {
            Some(last) if self.now_ms - last < cooldown_ms => reject(
                RejectReason::OnCooldown,
                format!(
                    "the next attack is ready in {} ms",
                    cooldown_ms - (self.now_ms - last)
                ),
            ),
            _ => Ok(()),
        }
    }

    /// An attack on an entity this region does not hold: when a neighbouring region lies within
    /// reach, the blow is sent there (a [`StruckAcross`] fact, whose `strike` commands the
    /// runner sends once it is stored), and that region decides the hit. A border is no wall in
    /// a fight.
    fn strike_across(
        &mut self,
        key: Key,
        me: schemas::EntityId,
        a: &Attack,
        command: EventId,
    ) -> Decision {
        let rules = self.rules();
        let position = self.position(key);
        let to_regions: Vec<schemas::RegionId> = rules
            .world
            .regions
            .iter()
            .filter(|r| rules.region.neighbours.contains(&r.id))
            .filter(|r| r.bounds.distance(&position) <= rules.balance.attack.range)
            .map(|r| r.id.clone())
            .collect();
        if to_regions.is_empty() {
            return reject(
                RejectReason::TargetNotFound,
                "no such entity in this region, and no border within reach",
            );
        }
        self.cooled_down(key)?;
        self.emit(Fact::StruckAcross(StruckAcross {
            attacker: me,
            target: a.target,
            amount: damage(command, &rules.balance.attack),
            position,
            to_regions,
        }));
        Ok(())
    }

    /// A blow from across the border: this region holds the target (or says it does not).
    fn struck(&mut self, s: &Strike) -> Decision {
        let Some(target) = key_of(self.world, s.target) else {
            return reject(
                RejectReason::TargetNotFound,
                "no such entity in this region",
            );
        };
        let Ok(ident) = self.world.get::<&Ident>(target).map(|i| **i) else {
            return reject(RejectReason::InvalidTarget, "items cannot be attacked");
        };
        if !self.alive(target) {
            return reject(RejectReason::TargetDead, "the target is already dead");
        }
        let range = self.rules().balance.attack.range;
        let distance = s.position.distance(&self.position(target));
        if distance > range {
            return reject(
                RejectReason::OutOfRange,
                format!("the target is {distance:.1} away; attacks reach {range}"),
            );
        }
        let xp = hit(self, s.attacker, ident, target, s.amount).filter(|xp| *xp > 0);
        // The attacker is in the other region's world: the experience goes there.
        if let Some(amount) = xp {
            self.emit(Fact::RewardSent(RewardSent {
                entity: s.attacker,
                npc: s.target,
                amount,
                to_region: s.from_region.clone(),
            }));
        }
        Ok(())
    }

    /// Experience a player earned over the border, granted here if the player still is.
    fn reward(&mut self, r: &Reward) -> Decision {
        let Some(key) = key_of(self.world, r.entity) else {
            return reject(
                RejectReason::TargetNotFound,
                "that player is not in this region",
            );
        };
        gain(self, key, r.entity, r.amount);
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

/// A number from `min` to `max` (inclusive) drawn from `seed`.
pub fn roll(seed: u64, min: u32, max: u32) -> u32 {
    let span = u64::from(max.saturating_sub(min)) + 1;
    // splitmix64's finaliser: every bit of the seed moves the result.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    min + u32::try_from(z % span).unwrap_or(0)
}

/// The damage of a player's attack, drawn from the command's id so it is the same whenever the
/// command is decided.
fn damage(command: EventId, attack: &crate::balance::Attack) -> u32 {
    let seed = u64::from_be_bytes(
        command.as_uuid().as_bytes()[8..16]
            .try_into()
            .unwrap_or([0; 8]),
    );
    roll(seed, attack.damage_min, attack.damage_max)
}

/// `attacker` hits `target` for `amount`: the damage, and the death and experience it brings.
/// Shared by players' attacks and NPCs'.
fn strike(out: &mut Facts<'_>, attacker: Key, target: Key, amount: u32) {
    let att = out.world.get::<&Ident>(attacker).ok().map(|i| **i);
    let tgt = out.world.get::<&Ident>(target).ok().map(|i| **i);
    let (Some(att), Some(tgt)) = (att, tgt) else {
        return;
    };
    let xp = hit(out, att.id, tgt, target, amount);
    if let (EntityKind::Player, Some(xp)) = (att.kind, xp.filter(|x| *x > 0)) {
        gain(out, attacker, att.id, xp);
    }
}

/// The player `key` (whose id is `id`) earns `xp`, and the level it brings.
fn gain(out: &mut Facts<'_>, key: Key, id: schemas::EntityId, xp: u64) {
    let Ok(p) = out
        .world
        .get::<&crate::components::Progress>(key)
        .map(|p| *p)
    else {
        return;
    };
    let rules = out.rules();
    // Experience stops adding up at the highest level.
    let total =
        p.xp.saturating_add(xp)
            .min(rules.balance.max_xp())
            .max(p.xp);
    let level = rules.balance.level_for(total);
    out.emit(Fact::XpGained(XpGained {
        entity: id,
        amount: total - p.xp,
        xp: total,
        level,
        max_hp: rules.balance.max_hp(level),
    }));
}

/// The damage to `target` (whose identity is `tgt`) and its death; for a slain NPC, the
/// experience it is worth.
fn hit(
    out: &mut Facts<'_>,
    attacker: schemas::EntityId,
    tgt: Ident,
    target: Key,
    amount: u32,
) -> Option<u64> {
    let hp = out.world.get::<&Health>(target).map(|h| h.hp).unwrap_or(0);
    let left = hp.saturating_sub(amount);
    out.emit(Fact::Damaged(Damaged {
        attacker,
        target: tgt.id,
        amount: hp - left,
        hp: left,
    }));
    if left > 0 {
        return None;
    }
    let position = out.position(target);
    match tgt.kind {
        EntityKind::Player => {
            out.emit(Fact::Died(Died {
                entity: tgt.id,
                killer: Some(attacker),
                position,
            }));
            None
        }
        EntityKind::Npc => {
            let rules = out.rules();
            let xp = out
                .world
                .get::<&Npc>(target)
                .ok()
                .and_then(|n| rules.balance.npcs.get(n.kind))
                .map_or(0, |k| k.xp);
            out.emit(Fact::NpcDied(NpcDied {
                npc: tgt.id,
                killer: Some(attacker),
                position,
            }));
            Some(xp)
        }
    }
}

/// Runs `strike` for the systems, which decide attacks outside any command.
pub(crate) fn npc_strike(
    world: &mut World,
    now_ms: i64,
    attacker: Key,
    target: Key,
    amount: u32,
) -> Vec<Fact> {
    let mut out = Facts {
        world,
        now_ms,
        facts: Vec::new(),
    };
    strike(&mut out, attacker, target, amount);
    out.facts
}
