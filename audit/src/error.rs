//! Every way an `audit` run fails, each said in one line that tells the analyst what to change.

/// Why a run failed. Nothing is written when a run fails before reading (bad arguments, an
/// output that cannot be written, NATS unreachable); an interrupted replay leaves no file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An argument is wrong; says which and what would be right.
    #[error("{0}")]
    Usage(String),
    /// NATS cannot be reached.
    #[error("cannot reach NATS at {url}: {why}")]
    Nats {
        /// Where it was tried.
        url: String,
        /// What failed.
        why: String,
    },
    /// A stream the run needs is not there.
    #[error("the stream {0} does not exist on this NATS (has `nats-topology ensure` run?)")]
    NoStream(String),
    /// Reading the log failed half-way.
    #[error("reading {stream} failed: {why}")]
    Read {
        /// The stream.
        stream: String,
        /// What failed.
        why: String,
    },
    /// The output cannot be written.
    #[error("cannot write {path}: {why}")]
    Output {
        /// The output path.
        path: String,
        /// What failed.
        why: String,
    },
    /// MongoDB cannot be read.
    #[error("cannot read MongoDB at {url}: {why}")]
    Mongo {
        /// Where it was tried.
        url: String,
        /// What failed.
        why: String,
    },
}

impl AuditError {
    /// A wrong argument.
    pub fn usage(why: impl Into<String>) -> Self {
        Self::Usage(why.into())
    }
}
