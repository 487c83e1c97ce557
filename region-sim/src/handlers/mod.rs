//! What each command does: the rules that turn a command into facts, decided against the
//! region's world as it stands when the command's turn comes. Every fact decided is folded in at
//! once (through [`crate::ecs_fold::apply`]), so a command later in the same tick sees it: that is
//! how the first of two pickups of one item wins and the second is rejected.
//!
//! Here, which rule a command goes to; the rules themselves, by what they are about:
//! `presence` (spawn, respawn, leave, kick, hand-off in), `movement` (walk), `chat`, `items`
//! (pickup), and [`crate::combat`] (attack, a blow from across the border, reward).

mod chat;
mod items;
mod movement;
mod presence;

use schemas::fact::{LeaveReason, Rejected};
use schemas::{Actor, Command, Envelope, Fact, Position, RejectReason};
use shipyard::World;

use crate::decide::{Decision, Facts, reject};
use crate::ecs_fold::key_of;

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
}
