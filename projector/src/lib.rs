//! The projector: `FACTS` into the MongoDB read models (`players`, `world`) and the audit trail
//! (with `COMMANDS`), Redis pub/sub for the live stream and the caches the gateway reads, and
//! rebuilds of the read models from the first fact without downtime.
//!
//! - [`application`]: the process: start-up, the lease, the projection's tasks and their stop
//!   order; [`cli`]: its command line.
//! - [`models`]: how facts change the read-model documents (pure; the documents are
//!   [`schemas::read_model`]'s).
//! - [`projection`]: a batch of facts written in one transaction (or guarded by `seq`).
//! - [`live`]: the consumers, the dead letters and the Redis bridge.
//! - [`pace`]: one write at a time, never abandoned, in batches sized to how fast writes are.
//! - [`trail`]: the audit trail's documents and indexes.
//! - [`rebuild`]: rebuilding the read models from the first fact, without downtime.
//! - [`rebuild_command`]: `projector rebuild`, which asks the running projector for a rebuild and
//!   shows its progress.
//! - [`lease`]: one live projection per deployment; the others stand by.
//! - [`settings`], [`metrics`]: configuration and Prometheus metrics.

pub mod application;
pub mod cli;
pub mod lease;
pub mod live;
pub mod metrics;
pub mod models;
pub mod pace;
pub mod projection;
pub mod rebuild;
pub mod rebuild_command;
pub mod settings;
pub mod trail;

use std::sync::Arc;

pub use application::{Application, RunError};
use metrics::Metrics;
use settings::Settings;

/// What every part of a projector process shares.
pub struct Context {
    /// The settings.
    pub settings: Settings,
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// JetStream on it.
    pub js: async_nats::jetstream::Context,
    /// The MongoDB client.
    pub mongo: mongodb::Client,
    /// The read models' database.
    pub db: mongodb::Database,
    /// Redis, when it could be reached at start.
    pub redis: Option<service::redis::Redis>,
    /// The metrics.
    pub metrics: Metrics,
    /// Held by the live projection while it writes a batch; a rebuild takes it to switch over.
    pub live_lock: tokio::sync::Mutex<()>,
    /// The writes to MongoDB, in turn: the facts, the commands' audit and a rebuild share it.
    pub lane: pace::Lane,
    /// The session the live projection writes its transactions in.
    pub live_writer: Arc<tokio::sync::Mutex<projection::Writer>>,
    /// The session a rebuild writes its transactions in.
    pub rebuild_writer: Arc<tokio::sync::Mutex<projection::Writer>>,
}

/// Why a projector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS cannot be reached.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// MongoDB's address does not parse, or its client cannot be made.
    #[error("MongoDB: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The read models' indexes cannot be created.
    #[error("cannot create the indexes: {0}")]
    Indexes(#[source] mongodb::error::Error),
    /// The HTTP side's address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from the settings.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Context {
    /// Connects to NATS, MongoDB and Redis.
    pub async fn connect(settings: Settings) -> Result<Arc<Self>, StartError> {
        let (nats, js) = nats_topology::publish::connect(
            &settings.nats_url,
            "projector",
            &settings.nats_credentials,
        )
        .await?;
        let mongo = mongodb::Client::with_uri_str(&settings.mongodb_uri).await?;
        let db = mongo.database(&settings.mongodb_database);
        let redis = live::redis(&settings.redis_url).await;
        Ok(Arc::new(Self {
            nats,
            js,
            mongo,
            db,
            redis,
            metrics: Metrics::new(),
            live_lock: tokio::sync::Mutex::new(()),
            lane: pace::Lane::new(settings.concurrent_writes),
            live_writer: Arc::new(tokio::sync::Mutex::new(
                projection::Writer::new(live::FACTS_CONSUMER).remembering(settings.known_documents),
            )),
            rebuild_writer: Arc::new(tokio::sync::Mutex::new(
                projection::Writer::new(rebuild::WRITER).remembering(settings.known_documents),
            )),
            settings,
        }))
    }
}
