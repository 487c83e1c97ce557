//! Where regions run: the balancing decision, a pure function of the loads the simulators report
//! in `node_load`, so that a simulation can run it round after round without processes.
//!
//! A region is weighed by what it costs a simulator to tick it ([`Costs`]): players first, then
//! NPCs, then items, on top of a fixed cost per region. A node's load is the sum of its regions'
//! weights. Each round a node gives away at most one region ([`decide`]):
//!
//! - **by density**: to the least loaded node that is not overloaded and could take it
//!   ([`Node::could_take`]), the heaviest of its regions that does not flip the pair (the giver
//!   stays at least as loaded as the taker after the move), and only when the move narrows the
//!   gap between the two by more than [`Policy::margin`]. Of all the nodes that have such a
//!   move, only the most loaded makes it, so one region moves by density a round and two givers
//!   never overshoot one taker;
//! - **by slow ticks**: when its ticks are slower than `overloaded_tick_ms` while another node's
//!   run under half of that and carry no more load, its lightest region that such a node could
//!   take, to the least loaded of those that could.
//!
//! A free region is taken by a node that is not overloaded and carries no more load than any
//! other such node ([`may_take`]); when every node is overloaded, by the least loaded of them
//! all, since a region that ticks slowly is better than one that does not tick. Only nodes that
//! could take the region count, here and in the comparison: a node at its cap
//! (`SIM_MAX_REGIONS`) or pinned to other regions (`SIM_REGIONS`) will never take it, and
//! holding back for it would leave the region unticked. Only reports that are recent count
//! ([`recent`]): a node that stopped reporting has died, and neither takes nor is given
//! anything.
//!
//! A move is aimed at the node that will take the region: the least loaded that could, which is
//! the one [`may_take`] lets take it once it is free (the giver, left heavier, stands aside).
//! Aimed at a lighter node that could not take it, a move would land on whichever node may,
//! perhaps one that ends heavier than the giver, and the region would come back: a region
//! "given" to a node at its cap went back and forth between the two others, round after round.
//!
//! Why it settles: each move by density takes `w` from a node to one lighter by `d ≥ 2w`, which
//! lowers the sum of the squared loads by `2w(d - w) ≥ 2w² > 0`; loads are whole numbers, so the
//! sum cannot fall forever. And a region never comes straight back: after the move the taker
//! carries no more than the giver, so the giver is never the taker's lighter partner for it,
//! whichever nodes could take it. It can come back later, once loads have changed: a giver that
//! goes on to shed regions to a node pinned to them, where this region could not go, can end
//! lighter than the region's taker by twice its weight, and take it back. Without pinned nodes
//! no simulation or property test has seen a region return to a node it left, though the
//! argument here does not rule it out.

use std::collections::BTreeMap;

use nats_topology::lease::{NodeLoad, RegionCensus};
use schemas::RegionId;

/// What a region's contents cost, in load units per thing.
///
/// - `region`: a region's fixed cost, whatever it holds: its tick loop, its three consumers
///   (high, normal, low), its snapshots and lease.
/// - `player`: an avatar costs the most: its commands are drained and applied each tick, it walks,
///   fights and picks up, every change of it is a fact published and broadcast to those near, and
///   it crosses borders.
/// - `npc`: an NPC is moved by the systems every tick (wander, chase, strike) with a neighbour
///   query, but sends no commands and is seen only through the facts it causes.
/// - `item`: an item lies in the grid index until picked up and waits to respawn; it is touched
///   only when someone reaches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// The fixed cost of a region.
    pub region: u64,
    /// The cost of an avatar.
    pub player: u64,
    /// The cost of an NPC.
    pub npc: u64,
    /// The cost of an item.
    pub item: u64,
}

/// The costs the simulators use: a player 20, an NPC 4, an item 1, a region 40. With the shipped
/// balance (55 NPCs and 80 items per region) an empty region weighs 340, and 17 players double
/// it.
pub const COSTS: Costs = Costs {
    region: 40,
    player: 20,
    npc: 4,
    item: 1,
};

impl Costs {
    /// The weight of a region holding what `census` counts. Saturates: absurd counts weigh the
    /// most, they never wrap.
    pub fn weigh(&self, census: &RegionCensus) -> u64 {
        self.region
            .saturating_add(census.players.saturating_mul(self.player))
            .saturating_add(census.npcs.saturating_mul(self.npc))
            .saturating_add(census.items.saturating_mul(self.item))
    }
}

/// How the decision is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The weights.
    pub costs: Costs,
    /// A move must narrow the gap between giver and taker by more than this many load units,
    /// so that small swings of the population move nothing. The default, 80, is two empty
    /// regions' fixed cost or four players.
    pub margin: u64,
    /// Ticks slower than this (milliseconds) make a node overloaded: it takes nothing, and is
    /// given nothing.
    pub overloaded_tick_ms: f64,
}

impl Policy {
    /// The shipped costs and margin, with the configured tick limit.
    pub fn new(overloaded_tick_ms: f64) -> Self {
        Self {
            costs: COSTS,
            margin: 80,
            overloaded_tick_ms,
        }
    }
}

/// One node as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Its id.
    pub node: String,
    /// Its regions and their weights.
    pub regions: BTreeMap<RegionId, u64>,
    /// Its slowest recent tick, in milliseconds.
    pub tick_ms: f64,
    /// The most regions it runs, if capped.
    pub max_regions: Option<usize>,
    /// The only regions it runs, if pinned; empty for any.
    pub allowed_regions: Vec<RegionId>,
}

impl Node {
    /// What it carries: the sum of its regions' weights (saturating).
    pub fn load(&self) -> u64 {
        u64::try_from(self.total()).unwrap_or(u64::MAX)
    }

    /// The exact sum, which no number of `u64` weights can overflow.
    fn total(&self) -> u128 {
        self.regions.values().map(|w| u128::from(*w)).sum()
    }

    /// A report as weighed by `costs`. A region the report counts is weighed by its census; one
    /// it does not (a node from before the census) gets an even share of the node's players and
    /// other entities, the latter counted as NPCs (the dearer of the two).
    pub fn from_report(load: &NodeLoad, costs: &Costs) -> Self {
        let counted: BTreeMap<&RegionId, &RegionCensus> =
            load.census.iter().map(|c| (&c.region, c)).collect();
        let uncounted = load
            .regions
            .iter()
            .filter(|r| !counted.contains_key(r))
            .count() as u64;
        let (players, entities) = if load.census.is_empty() {
            (load.players, load.entities)
        } else {
            (0, 0)
        };
        let share = |total: u64| total.checked_div(uncounted).unwrap_or(0);
        let estimate = RegionCensus {
            region: RegionId::new("estimate").expect("a valid id"),
            players: share(players),
            npcs: share(entities.saturating_sub(players)),
            items: 0,
        };
        let regions = load
            .regions
            .iter()
            .map(|r| {
                let census = counted.get(r).copied().unwrap_or(&estimate);
                (r.clone(), costs.weigh(census))
            })
            .collect();
        Self {
            node: load.node.clone(),
            regions,
            tick_ms: load.tick_ms,
            max_regions: load
                .max_regions
                .map(|cap| usize::try_from(cap).unwrap_or(usize::MAX)),
            allowed_regions: load.allowed_regions.clone(),
        }
    }

    /// Whether it would take `region` were it free: it is under its cap, and not pinned to
    /// other regions.
    pub fn could_take(&self, region: &RegionId) -> bool {
        self.max_regions.is_none_or(|cap| self.regions.len() < cap)
            && (self.allowed_regions.is_empty() || self.allowed_regions.contains(region))
    }

    fn overloaded(&self, policy: &Policy) -> bool {
        // A tick no number describes is as bad as a slow one.
        self.tick_ms.is_nan() || self.tick_ms > policy.overloaded_tick_ms
    }
}

/// Why a region is given away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The node carries clearly more than the lightest other.
    Density,
    /// The node's ticks are slow while another's are not.
    SlowTicks,
}

/// A region to give away this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveAway {
    /// The region.
    pub region: RegionId,
    /// The node it is given to: the least loaded that could take it, and so the one that will
    /// ([`may_take`]).
    pub to: String,
    /// Why.
    pub why: Why,
}

/// Which region, if any, `me` gives away this round, given every node's load (`me`'s among
/// them) and how many regions no node reports (`free`). A node with one region keeps it: moving
/// it would only move the load. While regions are free nothing moves by density: the loads are
/// about to change, and a region given away then could be taken back by its giver.
pub fn decide(me: &str, nodes: &[Node], free: usize, policy: &Policy) -> Option<GiveAway> {
    let mine = nodes.iter().find(|n| n.node == me)?;
    if mine.regions.len() < 2 {
        return None;
    }
    let load = mine.total();
    let others = || nodes.iter().filter(|n| n.node != me);

    if mine.overloaded(policy) {
        let calm = lightest_first(
            others().filter(|o| o.tick_ms <= policy.overloaded_tick_ms / 2.0 && o.total() <= load),
        );
        let mut regions: Vec<(&RegionId, &u64)> = mine.regions.iter().collect();
        regions.sort_by_key(|(r, w)| (**w, *r));
        return regions.into_iter().find_map(|(region, _)| {
            let to = calm.iter().find(|o| o.could_take(region))?;
            Some(GiveAway {
                region: region.clone(),
                to: to.node.clone(),
                why: Why::SlowTicks,
            })
        });
    }

    if free > 0 {
        return None;
    }
    // One move by density a round in the whole cluster: the most loaded node that has one makes
    // it, so that two givers never aim at the same taker and overshoot it.
    let giver = nodes
        .iter()
        .filter(|n| !n.overloaded(policy))
        .filter_map(|n| candidate(n, nodes, policy).map(|c| (n, c)))
        .max_by(|(a, _), (b, _)| (a.total(), &b.node).cmp(&(b.total(), &a.node)));
    match giver {
        Some((n, (region, to))) if n.node == me => Some(GiveAway {
            region,
            to,
            why: Why::Density,
        }),
        _ => None,
    }
}

/// The move by density `node` would make on its own: the heaviest of its regions that narrows
/// its gap to the least loaded other node that could take that region by more than the margin,
/// without flipping the pair (`w ≤ gap / 2` keeps the giver at least as loaded as the taker, so
/// the region has no reason to come back), and that node. A lighter node that could not take
/// the region is passed over: the region would go to another anyway.
fn candidate(node: &Node, nodes: &[Node], policy: &Policy) -> Option<(RegionId, String)> {
    if node.regions.len() < 2 {
        return None;
    }
    let load = node.total();
    let margin = u128::from(policy.margin);
    let takers = lightest_first(
        nodes
            .iter()
            .filter(|o| o.node != node.node && !o.overloaded(policy)),
    );
    let mut regions: Vec<(&RegionId, u128)> = node
        .regions
        .iter()
        .map(|(r, w)| (r, u128::from(*w)))
        .filter(|(_, w)| 2 * w > margin)
        .collect();
    // The heaviest first, the first by name among equals.
    regions.sort_by(|(ra, wa), (rb, wb)| wb.cmp(wa).then_with(|| ra.cmp(rb)));
    regions.into_iter().find_map(|(region, w)| {
        let to = takers.iter().find(|o| o.could_take(region))?;
        let gap = load.checked_sub(to.total())?;
        (2 * w <= gap).then(|| (region.clone(), to.node.clone()))
    })
}

/// `nodes` from the least loaded, the first by name among equals: the first of them that could
/// take a region is the one that would.
fn lightest_first<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<&'a Node> {
    let mut nodes: Vec<&Node> = nodes.collect();
    nodes.sort_by_cached_key(|n| (n.total(), n.node.clone()));
    nodes
}

/// Whether `me` may take the free `region` this round: it could take it (see
/// [`Node::could_take`]), is not overloaded, and carries no more than any other node that could
/// and is not. When every node that could take it is overloaded, the least loaded of them takes
/// it (the first by name among equals): otherwise a free region would wait, unticked, until some
/// node's ticks are quick again, which under a load that keeps them slow is never. Nodes that
/// could not take it are not waited for: they never will.
pub fn may_take(me: &str, region: &RegionId, nodes: &[Node], policy: &Policy) -> bool {
    let Some(mine) = nodes.iter().find(|n| n.node == me) else {
        return false;
    };
    if !mine.could_take(region) {
        return false;
    }
    let load = mine.total();
    let mut rivals = nodes
        .iter()
        .filter(|o| o.node != me && o.could_take(region));
    if mine.overloaded(policy) {
        return rivals.all(|o| o.overloaded(policy) && (load, me) <= (o.total(), o.node.as_str()));
    }
    rivals
        .filter(|o| !o.overloaded(policy))
        .all(|o| load <= o.total())
}

/// The reports stored within `max_age` of the newest report (each paired with when the bus
/// stored it, so that every node's report is timed by the same clock, the server's, whatever
/// the nodes' own clocks say). The newest is the reading node's own, written this round: a node
/// whose report is older than that by more than `max_age` has stopped (killed, or cut off from
/// the bus), and a decision weighing it would give regions to a node that will never take them,
/// or wait for it to take a free one. Its leases lapse on their own; its report lingers in the
/// bucket until it expires.
pub fn recent(
    reports: Vec<(NodeLoad, chrono::DateTime<chrono::Utc>)>,
    newest: Option<chrono::DateTime<chrono::Utc>>,
    max_age: std::time::Duration,
) -> Vec<NodeLoad> {
    let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    reports
        .into_iter()
        .filter(|(_, stored)| newest.is_none_or(|n| n.signed_duration_since(*stored) <= max_age))
        .map(|(report, _)| report)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, weights: &[u64]) -> Node {
        Node {
            node: name.into(),
            regions: weights
                .iter()
                .enumerate()
                .map(|(i, w)| (RegionId::new(format!("{name}-{i}")).expect("id"), *w))
                .collect(),
            tick_ms: 1.0,
            max_regions: None,
            allowed_regions: Vec::new(),
        }
    }

    fn free() -> RegionId {
        RegionId::new("free").expect("id")
    }

    /// The nodes that decide to take `region`, each deciding on its own.
    fn takers<'a>(nodes: &'a [Node], region: &RegionId, policy: &Policy) -> Vec<&'a str> {
        nodes
            .iter()
            .map(|n| n.node.as_str())
            .filter(|n| may_take(n, region, nodes, policy))
            .collect()
    }

    #[test]
    fn the_heaviest_region_that_does_not_flip_the_pair_goes_to_the_lightest() {
        let policy = Policy::new(100.0);
        let nodes = [
            node("a", &[340, 600, 900]),
            node("b", &[340]),
            node("c", &[700]),
        ];
        // gap 1840 - 340 = 1500: 600 (not 900, which would leave a lighter than b) goes to b.
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!(give.region.as_str(), "a-1");
        assert_eq!((give.to.as_str(), give.why), ("b", Why::Density));
        assert_eq!(decide("b", &nodes, 0, &policy), None);
        assert!(may_take("b", &free(), &nodes, &policy));
        assert!(!may_take("a", &free(), &nodes, &policy));
    }

    #[test]
    fn a_move_by_density_passes_over_a_lighter_node_that_could_not_take_the_region() {
        let policy = Policy::new(100.0);
        let mut capped = node("b", &[340]);
        capped.max_regions = Some(1);
        // b is the lightest but at its cap; c is one region short of a, so a region of a's would
        // only flip them: nothing moves.
        let nodes = [node("a", &[340; 4]), capped.clone(), node("c", &[340; 3])];
        for n in ["a", "b", "c"] {
            assert_eq!(decide(n, &nodes, 0, &policy), None, "{n}");
        }
        // Two regions short, c is given one.
        let nodes = [node("a", &[340; 4]), capped, node("c", &[340; 2])];
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!((give.region.as_str(), give.to.as_str()), ("a-0", "c"));
    }

    #[test]
    fn a_pinned_node_is_given_a_region_it_runs_and_no_other() {
        let policy = Policy::new(100.0);
        let mut pinned = node("b", &[]);
        pinned.allowed_regions = vec![RegionId::new("a-2").expect("id")];
        // a's heavier regions could go only to c, too close to a; b runs a-2.
        let nodes = [node("a", &[600, 340, 340]), pinned, node("c", &[1000])];
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!((give.region.as_str(), give.to.as_str()), ("a-2", "b"));
    }

    #[test]
    fn a_slow_node_gives_its_lightest_region_a_calm_node_could_take() {
        let policy = Policy::new(100.0);
        let mut pinned = node("b", &[]);
        pinned.allowed_regions = vec![RegionId::new("a-0").expect("id")];
        // b, the calmest and lightest, runs only a-0: a-1 goes to c.
        let nodes = [slow("a", &[400, 340]), pinned.clone(), node("c", &[340])];
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!(
            (give.region.as_str(), give.to.as_str(), give.why),
            ("a-1", "c", Why::SlowTicks)
        );
        // With b alone calm, a-0 goes to b, though it is not a's lightest.
        let nodes = [slow("a", &[400, 340]), pinned];
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!((give.region.as_str(), give.to.as_str()), ("a-0", "b"));
        // No calm node could take any of them: a keeps them.
        let mut capped = node("c", &[340]);
        capped.max_regions = Some(1);
        assert_eq!(
            decide("a", &[slow("a", &[400, 340]), capped], 0, &policy),
            None
        );
    }

    #[test]
    fn a_gap_within_the_margin_moves_nothing() {
        let policy = Policy::new(100.0);
        let nodes = [node("a", &[340, 340, 380]), node("b", &[340, 340, 340])];
        assert_eq!(decide("a", &nodes, 0, &policy), None);
    }

    #[test]
    fn a_slow_node_gives_its_lightest_region_to_a_calm_one() {
        let policy = Policy::new(100.0);
        let mut slow = node("a", &[400, 340]);
        slow.tick_ms = 250.0;
        let nodes = [slow, node("b", &[340, 340])];
        let give = decide("a", &nodes, 0, &policy).expect("a gives");
        assert_eq!((give.region.as_str(), give.why), ("a-1", Why::SlowTicks));
        // And an overloaded node takes nothing, nor is given anything.
        assert!(!may_take("a", &free(), &nodes, &policy));
        assert_eq!(decide("b", &nodes, 0, &policy), None);
    }

    #[test]
    fn when_every_node_is_slow_the_least_loaded_still_takes_a_free_region() {
        let policy = Policy::new(100.0);
        let slow = |name, weights: &[u64]| {
            let mut n = node(name, weights);
            n.tick_ms = 250.0;
            n
        };
        let nodes = [slow("a", &[400, 340]), slow("b", &[340]), slow("c", &[340])];
        // Exactly one node takes: the least loaded, the first by name among equals.
        assert_eq!(takers(&nodes, &free(), &policy), ["b"]);
        // While one node is quick, the slow ones leave free regions to it, whatever it carries.
        let mut with_quick = nodes.to_vec();
        with_quick.push(node("d", &[900, 900]));
        assert_eq!(takers(&with_quick, &free(), &policy), ["d"]);
        // A node with no number for its ticks counts as slow, and alone still takes.
        let mut unknown = node("e", &[]);
        unknown.tick_ms = f64::NAN;
        assert!(may_take("e", &free(), &[unknown], &policy));
    }

    fn slow(name: &str, weights: &[u64]) -> Node {
        let mut n = node(name, weights);
        n.tick_ms = 250.0;
        n
    }

    #[test]
    fn a_capped_quick_node_leaves_a_free_region_to_the_next_best() {
        let policy = Policy::new(100.0);
        let mut capped = node("a", &[340]);
        capped.max_regions = Some(1);
        // The lightest and quick, but at its cap: b, the next lightest, takes, and only b.
        let nodes = [
            capped.clone(),
            node("b", &[340, 340]),
            node("c", &[340, 340, 340]),
        ];
        assert_eq!(takers(&nodes, &free(), &policy), ["b"]);
        // Nor do slow nodes wait for it: the least loaded of them takes.
        let nodes = [capped.clone(), slow("b", &[340, 340]), slow("c", &[340])];
        assert_eq!(takers(&nodes, &free(), &policy), ["c"]);
        // Under its cap, it takes as before.
        let mut roomy = capped;
        roomy.max_regions = Some(2);
        let nodes = [roomy, node("b", &[340, 340]), node("c", &[340, 340, 340])];
        assert_eq!(takers(&nodes, &free(), &policy), ["a"]);
    }

    #[test]
    fn a_pinned_quick_node_leaves_other_regions_to_the_next_best() {
        let policy = Policy::new(100.0);
        let north = RegionId::new("north").expect("id");
        let mut pinned = node("a", &[]);
        pinned.allowed_regions = vec![north.clone()];
        // The lightest and quick, but pinned to north: b, the next lightest, takes, and only b.
        let nodes = [pinned.clone(), node("b", &[340]), node("c", &[340, 340])];
        assert_eq!(takers(&nodes, &free(), &policy), ["b"]);
        // North itself is its to take.
        assert_eq!(takers(&nodes, &north, &policy), ["a"]);
        // Nor do slow nodes wait for it: the least loaded of them takes.
        let nodes = [pinned, slow("b", &[340, 340]), slow("c", &[340])];
        assert_eq!(takers(&nodes, &free(), &policy), ["c"]);
        assert_eq!(takers(&nodes, &north, &policy), ["a"]);
    }

    #[test]
    fn a_region_no_node_could_take_is_taken_by_none() {
        let policy = Policy::new(100.0);
        let mut capped = node("a", &[340]);
        capped.max_regions = Some(1);
        let mut pinned = node("b", &[]);
        pinned.allowed_regions = vec![RegionId::new("north").expect("id")];
        assert!(takers(&[capped, pinned], &free(), &policy).is_empty());
    }

    #[test]
    fn a_node_that_stopped_reporting_is_left_out() {
        let now = chrono::Utc::now();
        // Each node's own clock may say anything: only when the bus stored a report counts.
        let report = |node: &str, stored_secs_ago: i64| {
            let load = NodeLoad {
                node: node.into(),
                regions: Vec::new(),
                players: 0,
                entities: 0,
                tick_ms: 1.0,
                reported_at: now + chrono::Duration::hours(3),
                census: Vec::new(),
                max_regions: None,
                allowed_regions: Vec::new(),
            };
            (load, now - chrono::Duration::seconds(stored_secs_ago))
        };
        let kept = recent(
            vec![report("alive", 3), report("dead", 16), report("edge", 15)],
            Some(now),
            std::time::Duration::from_secs(15),
        );
        let names: Vec<_> = kept.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(names, ["alive", "edge"]);
        // With no reference (no report read at all), nothing is left out.
        assert_eq!(
            recent(
                vec![report("old", 600)],
                None,
                std::time::Duration::from_secs(15)
            )
            .len(),
            1
        );
    }

    #[test]
    fn an_older_report_is_weighed_from_its_totals() {
        let load = NodeLoad::decode(
            br#"{"node":"old","regions":["west","east"],"players":4,"entities":114,"tick_ms":1.0,"reported_at":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("decodes");
        let weighed = Node::from_report(&load, &COSTS);
        // Each region: 2 players and 55 NPCs.
        assert_eq!(
            weighed.regions.values().copied().collect::<Vec<_>>(),
            [300, 300]
        );
        // It said nothing of a cap or pins: it is taken to have neither, as it was before.
        assert_eq!(weighed.max_regions, None);
        assert!(weighed.could_take(&free()));
    }

    #[test]
    fn a_report_carries_its_cap_and_pins() {
        let load = NodeLoad::decode(
            br#"{"node":"n","regions":["west"],"players":0,"entities":0,"tick_ms":1.0,"reported_at":"2026-01-01T00:00:00Z","max_regions":1,"allowed_regions":["west","east"]}"#,
        )
        .expect("decodes");
        let mut weighed = Node::from_report(&load, &COSTS);
        let east = RegionId::new("east").expect("id");
        assert_eq!(weighed.max_regions, Some(1));
        assert!(!weighed.could_take(&east), "at its cap");
        weighed.regions.clear();
        assert!(weighed.could_take(&east));
        assert!(!weighed.could_take(&free()), "pinned to west and east");
    }
}
