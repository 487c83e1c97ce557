//! Reads that see the reader's own writes. An outcome names the `FACTS` sequences of what the
//! command did (`fact_seqs`); a read given `?min_seq=N` answers only once the projection has
//! written every fact up to `N` (its position, kept in Redis by the projector after each batch),
//! waiting up to [`MIN_SEQ_WAIT`], and otherwise answers 409 `projection_behind` with the
//! position it has reached, so that a client never has to guess how long to sleep. A sequence
//! beyond the last fact stored is answered 409 at once.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use schemas::read_model::key::PROJECTION_POSITION;
use schemas::{FieldError, Invalid};
use tokio::time::Instant;

use crate::AppState;
use crate::error::{ApiError, Code};

/// The query parameter.
pub const MIN_SEQ: &str = "min_seq";

/// The largest `min_seq` taken: a stream sequence is below 2^63.
pub const MAX_MIN_SEQ: u64 = i64::MAX as u64;

/// How long a read waits for the projection to reach its `min_seq`.
pub const MIN_SEQ_WAIT: Duration = Duration::from_secs(2);

/// How often the position is looked at meanwhile.
const POLL: Duration = Duration::from_millis(20);

/// `?min_seq=` in `query`, when given: a whole number from 1 to [`MAX_MIN_SEQ`].
pub fn min_seq(query: &HashMap<String, String>) -> Result<Option<u64>, FieldError> {
    let Some(raw) = query.get(MIN_SEQ) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=MAX_MIN_SEQ).contains(&n) => Ok(Some(n)),
        _ => Err(FieldError::new(
            MIN_SEQ,
            "range",
            format!("must be a whole number from 1 to {MAX_MIN_SEQ}"),
        )),
    }
}

/// The projection's position: every fact up to it is in the read models.
pub async fn position(state: &AppState) -> Result<u64, ApiError> {
    let got: Result<Option<u64>, _> = tokio::time::timeout(
        crate::redis_asks::BUDGET,
        state.redis().get(PROJECTION_POSITION),
    )
    .await
    .unwrap_or_else(|_| {
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no answer in time",
        )))
    });
    got.map(Option::unwrap_or_default).map_err(|e| {
        state.dependency_failed(
            "redis",
            e,
            "cannot read the projection's position",
            "the projection's position",
        )
    })
}

/// The query of a read that takes `min_seq` and nothing else: its `min_seq`, or a 400 naming
/// every bad parameter.
pub fn only_min_seq(query: &HashMap<String, String>) -> Result<Option<u64>, Invalid> {
    let mut details: Vec<FieldError> =
        crate::error::unknown_parameters(query, &[MIN_SEQ]).collect();
    let min_seq = min_seq(query).unwrap_or_else(|d| {
        details.push(d);
        None
    });
    details.sort_by(|a, b| a.field.cmp(&b.field));
    Invalid::check(details)?;
    Ok(min_seq)
}

/// Returns once the projection has reached `min_seq` (at once without one); 409
/// `projection_behind` when it has not within [`MIN_SEQ_WAIT`].
pub async fn reached(state: &AppState, min_seq: Option<u64>) -> Result<(), ApiError> {
    let Some(wanted) = min_seq else {
        return Ok(());
    };
    let deadline = Instant::now() + MIN_SEQ_WAIT;
    let mut head_checked = false;
    loop {
        let at = position(state).await?;
        if at >= wanted {
            return Ok(());
        }
        // A position no fact has been stored at yet was named by no outcome: waiting for it
        // would be waiting for the future.
        let beyond_the_log = !head_checked && beyond_the_log(state, wanted).await;
        head_checked = true;
        if beyond_the_log {
            return Err(behind(
                at,
                wanted,
                "beyond_the_log",
                format!("no fact is stored at {wanted} yet; the projection is at {at}"),
            ));
        }
        if Instant::now() + POLL > deadline {
            return Err(behind(
                at,
                wanted,
                "not_reached",
                format!("the projection is at {at}"),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// 409 `projection_behind`, with the position reached.
fn behind(at: u64, wanted: u64, code: &str, detail: String) -> ApiError {
    ApiError {
        details: vec![FieldError::new(MIN_SEQ, code, detail)],
        retry_after: Some(1),
        ..ApiError::new(
            Code::ProjectionBehind,
            format!("the read models have every fact up to {at}, not yet {wanted}; ask again"),
        )
    }
}

/// Whether `wanted` lies beyond the last fact stored in `FACTS` (false when NATS does not say).
async fn beyond_the_log(state: &AppState, wanted: u64) -> bool {
    let info = async {
        let mut stream = state
            .js()
            .get_stream(nats_topology::topology::FACTS)
            .await
            .ok()?;
        stream.info().await.ok().map(|i| i.state.last_sequence)
    };
    matches!(
        tokio::time::timeout(crate::redis_asks::BUDGET, info).await,
        Ok(Some(last)) if wanted > last
    )
}
