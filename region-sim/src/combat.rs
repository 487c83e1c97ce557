//! The combat rules, in one place: a player's attack (here or over the border), a blow from
//! across the border, the experience sent back for it, the cooldown, the damage rolls, and the
//! strike shared by players and NPCs with the death and experience it brings.

use schemas::command::{Attack, Reward, Strike};
use schemas::fact::{Damaged, Died, NpcDied, RewardSent, StruckAcross, XpGained};
use schemas::{EntityKind, EventId, Fact, RejectReason};
use shipyard::World;

use crate::components::{Combat, Health, Ident, Key, Npc};
use crate::decide::{Decision, Facts, reject};
use crate::ecs_fold::key_of;

impl Facts<'_> {
    pub(crate) fn attack(
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
    pub(crate) fn struck(&mut self, s: &Strike) -> Decision {
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
    pub(crate) fn reward(&mut self, r: &Reward) -> Decision {
        let Some(key) = key_of(self.world, r.entity) else {
            return reject(
                RejectReason::TargetNotFound,
                "that player is not in this region",
            );
        };
        gain(self, key, r.entity, r.amount);
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
    let mut out = Facts::new(world, now_ms);
    strike(&mut out, attacker, target, amount);
    out.facts
}
