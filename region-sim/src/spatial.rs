//! The grid spatial index of one region: square cells of the configured size, each listing the
//! entities in it, so "who is near this point" costs the cells the circle touches and the entities
//! in them, never the whole region.

use std::collections::HashMap;
use std::hash::Hash;

use schemas::{Bounds, Position};

/// A uniform grid over a region's bounds. Points outside the bounds are kept in the nearest edge
/// cell, so an entity a little outside (crossing a border, say) is still found.
#[derive(Debug, Clone)]
pub struct Grid<K> {
    origin: Position,
    cell: f64,
    cols: usize,
    rows: usize,
    cells: Vec<Vec<(K, Position)>>,
    located: HashMap<K, usize>,
}

impl<K: Copy + Eq + Hash> Grid<K> {
    /// An empty grid over `bounds` with cells of side `cell` (positive).
    pub fn new(bounds: Bounds, cell: f64) -> Self {
        let cell = if cell.is_finite() && cell > 0.0 {
            cell
        } else {
            1.0
        };
        let span = |lo: f64, hi: f64| (((hi - lo) / cell).ceil() as usize).max(1);
        let (cols, rows) = (
            span(bounds.min.x, bounds.max.x),
            span(bounds.min.y, bounds.max.y),
        );
        Self {
            origin: bounds.min,
            cell,
            cols,
            rows,
            cells: vec![Vec::new(); cols * rows],
            located: HashMap::new(),
        }
    }

    fn col(&self, x: f64) -> usize {
        (((x - self.origin.x) / self.cell).floor().max(0.0) as usize).min(self.cols - 1)
    }

    fn row(&self, y: f64) -> usize {
        (((y - self.origin.y) / self.cell).floor().max(0.0) as usize).min(self.rows - 1)
    }

    fn cell_of(&self, p: &Position) -> usize {
        self.row(p.y) * self.cols + self.col(p.x)
    }

    /// How many entities it holds.
    pub fn len(&self) -> usize {
        self.located.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.located.is_empty()
    }

    /// Puts `key` at `p`, or moves it there if it is already in.
    pub fn insert(&mut self, key: K, p: Position) {
        let to = self.cell_of(&p);
        match self.located.get(&key).copied() {
            Some(from) if from == to => {
                if let Some(entry) = self.cells[from].iter_mut().find(|(k, _)| *k == key) {
                    entry.1 = p;
                }
            }
            Some(from) => {
                if let Some(i) = self.cells[from].iter().position(|(k, _)| *k == key) {
                    self.cells[from].swap_remove(i);
                }
                self.cells[to].push((key, p));
                self.located.insert(key, to);
            }
            None => {
                self.cells[to].push((key, p));
                self.located.insert(key, to);
            }
        }
    }

    /// Takes `key` out; `false` when it was not in.
    pub fn remove(&mut self, key: K) -> bool {
        let Some(from) = self.located.remove(&key) else {
            return false;
        };
        if let Some(i) = self.cells[from].iter().position(|(k, _)| *k == key) {
            self.cells[from].swap_remove(i);
        }
        true
    }

    /// Calls `visit` with every entity within `radius` of `center` (and its position).
    pub fn for_each_near(
        &self,
        center: &Position,
        radius: f64,
        mut visit: impl FnMut(K, &Position),
    ) {
        if !(radius >= 0.0 && center.x.is_finite() && center.y.is_finite()) {
            return;
        }
        let r2 = radius * radius;
        let (c0, c1) = (self.col(center.x - radius), self.col(center.x + radius));
        let (r0, r1) = (self.row(center.y - radius), self.row(center.y + radius));
        for row in r0..=r1 {
            for cell in &self.cells[row * self.cols + c0..=row * self.cols + c1] {
                for (key, p) in cell {
                    let (dx, dy) = (p.x - center.x, p.y - center.y);
                    if dx * dx + dy * dy <= r2 {
                        visit(*key, p);
                    }
                }
            }
        }
    }

    /// Every entity within `radius` of `center`.
    pub fn near(&self, center: &Position, radius: f64) -> Vec<K> {
        let mut found = Vec::new();
        self.for_each_near(center, radius, |k, _| found.push(k));
        found
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bounds() -> Bounds {
        Bounds::new(Position::new(0.0, 0.0), Position::new(1000.0, 1000.0)).expect("bounds")
    }

    #[test]
    fn neighbours_are_found_across_cells_and_far_ones_are_not() {
        let mut grid = Grid::new(bounds(), 25.0);
        grid.insert(1, Position::new(100.0, 100.0));
        grid.insert(2, Position::new(124.0, 100.0)); // same cell
        grid.insert(3, Position::new(126.0, 100.0)); // next cell
        grid.insert(4, Position::new(500.0, 500.0));
        let mut near = grid.near(&Position::new(110.0, 100.0), 20.0);
        near.sort();
        assert_eq!(near, vec![1, 2, 3]);
    }

    #[test]
    fn moving_and_removing_keep_the_index_true() {
        let mut grid = Grid::new(bounds(), 25.0);
        grid.insert(7, Position::new(10.0, 10.0));
        grid.insert(7, Position::new(900.0, 900.0));
        assert!(grid.near(&Position::new(10.0, 10.0), 5.0).is_empty());
        assert_eq!(grid.near(&Position::new(900.0, 900.0), 1.0), vec![7]);
        assert_eq!(grid.len(), 1);
        assert!(grid.remove(7));
        assert!(!grid.remove(7));
        assert!(grid.is_empty());
    }

    #[test]
    fn points_just_outside_the_bounds_are_still_found() {
        let mut grid = Grid::new(bounds(), 25.0);
        grid.insert(1, Position::new(1000.5, 500.0));
        assert_eq!(grid.near(&Position::new(999.0, 500.0), 2.0), vec![1]);
    }

    proptest! {
        #[test]
        fn the_grid_finds_exactly_what_a_scan_finds(
            points in proptest::collection::vec((-20.0..1020.0f64, -20.0..1020.0f64), 0..200),
            moves in proptest::collection::vec((0usize..200, 0.0..1000.0f64, 0.0..1000.0f64), 0..50),
            center in (-50.0..1050.0f64, -50.0..1050.0f64),
            radius in 0.0..300.0f64,
            cell in 1.0..200.0f64,
        ) {
            let mut grid = Grid::new(bounds(), cell);
            let mut truth: HashMap<usize, Position> = HashMap::new();
            for (i, (x, y)) in points.iter().enumerate() {
                grid.insert(i, Position::new(*x, *y));
                truth.insert(i, Position::new(*x, *y));
            }
            for (i, x, y) in moves {
                if truth.contains_key(&i) {
                    grid.insert(i, Position::new(x, y));
                    truth.insert(i, Position::new(x, y));
                }
            }
            let c = Position::new(center.0, center.1);
            let mut found = grid.near(&c, radius);
            found.sort();
            let mut expected: Vec<usize> = truth.iter().filter(|(_, p)| {
                let (dx, dy) = (p.x - c.x, p.y - c.y);
                dx * dx + dy * dy <= radius * radius
            }).map(|(k, _)| *k).collect();
            expected.sort();
            prop_assert_eq!(found, expected);
        }
    }
}
