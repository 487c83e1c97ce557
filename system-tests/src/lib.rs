//! The whole game's tests, with no code of their own to ship: they live in `tests/`.
//!
//! - `tests/e2e.rs`: the gateway and a region simulator (in the test's process) and the
//!   projector (a process of its own, this package's `system-tests-projector`, built from the
//!   projector's own `main.rs`) against real NATS, Redis and MongoDB-compatible servers, through
//!   the REST API.
//! - `tests/fold_agreement.rs`: the simulator's state, the shared fold of the facts it stored
//!   and the projector's documents of those facts say the same of every avatar and item.
