//! The neighbour query of the grid index at 1 000, 10 000 and 50 000 entities in a
//! 1 000 x 1 000 region with 25-unit cells (the shipped region config), and a move.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use region_sim::Grid;
use schemas::{Bounds, Position};

/// A fixed pseudo-random sequence, so every run places the same entities.
fn positions(n: usize) -> Vec<Position> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000_000) as f64 / 1000.0
    };
    (0..n).map(|_| Position::new(next(), next())).collect()
}

fn neighbour_query(c: &mut Criterion) {
    let bounds =
        Bounds::new(Position::new(0.0, 0.0), Position::new(1000.0, 1000.0)).expect("bounds");
    let mut group = c.benchmark_group("grid");
    for n in [1_000usize, 10_000, 50_000] {
        let points = positions(n);
        let mut grid = Grid::new(bounds, 25.0);
        for (i, p) in points.iter().enumerate() {
            grid.insert(i, *p);
        }
        let center = Position::new(500.0, 500.0);
        group.bench_with_input(BenchmarkId::new("near_r30", n), &n, |b, _| {
            b.iter(|| {
                let mut count = 0usize;
                grid.for_each_near(black_box(&center), 30.0, |_, _| count += 1);
                count
            })
        });
        group.bench_with_input(BenchmarkId::new("move", n), &n, |b, _| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % n;
                let p = points[i];
                grid.insert(i, Position::new((p.x + 1.0) % 1000.0, p.y));
                grid.insert(i, p);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, neighbour_query);
criterion_main!(benches);
