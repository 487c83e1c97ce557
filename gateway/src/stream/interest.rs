//! Which regions a stream listens to: those within `stream.interest_radius` of its avatar and
//! of the walk it is on, recomputed from each of the player's own facts that places it.

use std::collections::BTreeSet;

use schemas::fold::{PlayerState, players_of};
use schemas::read_model::channel;
use schemas::{Envelope, Fact, PlayerId, Position, RegionId, WorldConfig};

/// The regions a stream listens to: those within `radius` of any of `points`.
pub fn regions_near(world: &WorldConfig, points: &[Position], radius: f64) -> BTreeSet<RegionId> {
    world
        .regions
        .iter()
        .filter(|r| points.iter().any(|p| r.bounds.distance(p) <= radius))
        .map(|r| r.id.clone())
        .collect()
}

/// Points along a walk, close enough together that no region within `radius` of the walk is
/// missed between them.
fn along(from: Position, to: Position, radius: f64) -> Vec<Position> {
    let step = radius.max(1.0);
    let steps = (from.distance(&to) / step).ceil().clamp(1.0, 10_000.0) as usize;
    (0..=steps)
        .map(|i| {
            let t = i as f64 / steps as f64;
            Position::new(from.x + (to.x - from.x) * t, from.y + (to.y - from.y) * t)
        })
        .collect()
}

/// Where a stream's avatar is, as far as its own facts tell: the shared fold's [`PlayerState`]
/// of the player (the same the `players` read model is), and the regions within the radius of
/// where it stands and of the walk it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Interest {
    player: PlayerId,
    radius: f64,
    avatar: Option<PlayerState>,
    regions: BTreeSet<RegionId>,
}

impl Interest {
    /// An avatar in `region` at `position`, or out of the world when `region` is `None`.
    pub fn new(
        world: &WorldConfig,
        player: PlayerId,
        radius: f64,
        region: Option<RegionId>,
        position: Option<Position>,
    ) -> Self {
        let avatar = PlayerState {
            online: region.is_some() || position.is_some(),
            region,
            position,
            ..PlayerState::unknown()
        };
        let regions = Self::regions_of(world, &avatar, radius);
        Self {
            player,
            radius,
            avatar: Some(avatar),
            regions,
        }
    }

    fn regions_of(world: &WorldConfig, avatar: &PlayerState, radius: f64) -> BTreeSet<RegionId> {
        if !avatar.online {
            return BTreeSet::new();
        }
        let points = match (avatar.position, avatar.destination) {
            (Some(from), Some(to)) => along(from, to, radius),
            (Some(at), None) => vec![at],
            (None, _) => vec![],
        };
        let mut regions = regions_near(world, &points, radius);
        regions.extend(avatar.region.clone());
        regions
    }

    /// The player whose avatar this follows.
    pub fn player(&self) -> PlayerId {
        self.player
    }

    /// The channels to listen to.
    pub fn channels(&self) -> BTreeSet<String> {
        let mut channels: BTreeSet<String> = self.regions.iter().map(channel::region).collect();
        channels.insert(channel::player(self.player));
        channels
    }

    /// Follows a fact with the shared fold when it concerns the player; whether the regions
    /// changed.
    pub fn follow(&mut self, world: &WorldConfig, fact: &Envelope<Fact>) -> bool {
        if !players_of(&fact.payload).contains(&self.player)
            || !PlayerState::fold(&mut self.avatar, self.player, fact)
        {
            return false;
        }
        let next = self
            .avatar
            .as_ref()
            .map(|a| Self::regions_of(world, a, self.radius))
            .unwrap_or_default();
        let changed = next != self.regions;
        self.regions = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use schemas::fact::{LeaveReason, Left, MovementStarted};
    use schemas::{Actor, EntityId, EventId};

    use super::*;

    fn world() -> WorldConfig {
        WorldConfig::from_toml(include_str!("../../../config/regions.toml")).expect("regions")
    }

    fn fact(region: &str, payload: Fact) -> Envelope<Fact> {
        let id = EventId::new();
        Envelope {
            id,
            occurred_at: chrono::Utc::now(),
            actor: Actor::System {
                service: "region-sim".into(),
            },
            region: Some(region.parse().expect("region")),
            correlation_id: id,
            causation_id: None,
            payload,
        }
    }

    fn names(interest: &Interest) -> Vec<String> {
        interest.regions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_stream_listens_to_every_region_within_its_radius() {
        let world = world();
        let player = PlayerId::new();
        let middle = Interest::new(
            &world,
            player,
            100.0,
            Some("south-west".parse().expect("region")),
            Some(Position::new(500.0, 500.0)),
        );
        assert_eq!(names(&middle), ["south-west"]);
        let corner = Interest::new(
            &world,
            player,
            100.0,
            None,
            Some(Position::new(990.0, 990.0)),
        );
        assert_eq!(corner.regions.len(), 4, "all four regions meet there");
        let nowhere = Interest::new(&world, player, 100.0, None, None);
        assert!(nowhere.regions.is_empty());
        assert_eq!(
            nowhere.channels(),
            BTreeSet::from([channel::player(player)])
        );
    }

    #[test]
    fn a_walk_brings_every_region_along_it_into_view_and_leaving_drops_them() {
        let world = world();
        let player = PlayerId::new();
        let me = EntityId::from(player);
        let mut interest = Interest::new(
            &world,
            player,
            100.0,
            Some("south-west".parse().expect("region")),
            Some(Position::new(500.0, 500.0)),
        );
        let walk = fact(
            "south-west",
            Fact::MovementStarted(MovementStarted {
                entity: me,
                from: Position::new(500.0, 500.0),
                destination: Position::new(1500.0, 500.0),
            }),
        );
        assert!(interest.follow(&world, &walk));
        assert_eq!(names(&interest), ["south-east", "south-west"]);

        let someone_else = fact(
            "south-west",
            Fact::MovementStarted(MovementStarted {
                entity: EntityId::new(),
                from: Position::new(500.0, 500.0),
                destination: Position::new(500.0, 1500.0),
            }),
        );
        assert!(
            !interest.follow(&world, &someone_else),
            "only the player's own facts move it"
        );

        let left = fact(
            "south-east",
            Fact::Left(Left {
                entity: me,
                reason: LeaveReason::Requested,
                position: Position::new(1500.0, 500.0),
                progress: None,
            }),
        );
        assert!(interest.follow(&world, &left));
        assert!(interest.regions.is_empty());
    }
}
