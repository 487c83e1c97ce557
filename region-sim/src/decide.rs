//! How the rules decide: against the region's world as it stands, each fact folded in (through
//! [`crate::ecs_fold::apply`]) the moment it is decided, so what is decided next sees it; or a
//! rejection, with its reason. Shared by the commands' handlers, the combat rules and the
//! systems that strike.

use schemas::{Fact, Position, RejectReason};
use shipyard::World;

use crate::components::{Health, Key, Pos, Rules};
use crate::ecs_fold;

/// What deciding a command came to: applied (its facts emitted), or rejected with a reason and
/// a message for the player.
pub(crate) type Decision = Result<(), (RejectReason, String)>;

/// A rejection.
pub(crate) fn reject(reason: RejectReason, message: impl Into<String>) -> Decision {
    Err((reason, message.into()))
}

/// A world being decided on at `now_ms`, and the facts decided so far, in order.
pub(crate) struct Facts<'w> {
    pub(crate) world: &'w mut World,
    pub(crate) now_ms: i64,
    pub(crate) facts: Vec<Fact>,
}

impl<'w> Facts<'w> {
    /// Nothing decided yet on `world` at `now_ms`.
    pub(crate) fn new(world: &'w mut World, now_ms: i64) -> Self {
        Self {
            world,
            now_ms,
            facts: Vec::new(),
        }
    }

    /// Decides `fact`: folds it in and keeps it.
    pub(crate) fn emit(&mut self, fact: Fact) {
        ecs_fold::apply(self.world, &fact, self.now_ms);
        self.facts.push(fact);
    }

    /// The region's rules.
    pub(crate) fn rules(&self) -> Rules {
        self.world
            .get_unique::<&Rules>()
            .map(|r| r.clone())
            .expect("a region world always has its rules")
    }

    /// Whether the entity `key` is alive.
    pub(crate) fn alive(&self, key: Key) -> bool {
        self.world
            .get::<&Health>(key)
            .map(|h| h.alive)
            .unwrap_or(false)
    }

    /// Where the entity `key` stands.
    pub(crate) fn position(&self, key: Key) -> Position {
        self.world
            .get::<&Pos>(key)
            .map(|p| p.0)
            .unwrap_or(Position::new(0.0, 0.0))
    }
}
