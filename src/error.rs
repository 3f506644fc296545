//! The library's errors, by layer. The HTTP layer and the binary map these to status codes
//! and exit codes; nothing here knows about either.

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or the connection failed. Usually transient.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The queue backend failed. Transient: the database still holds every job.
    #[error("queue error: {0}")]
    Queue(String),
    /// Redis (the queue or the event bus) failed while `doing` something. Transient: the
    /// database still holds every job.
    #[cfg(feature = "redis")]
    #[error("Redis error ({doing}): {source}")]
    Redis {
        doing: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// The caller's input is wrong; the message says how.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is valid but the job's state forbids it (e.g. cancelling a finished job).
    #[error("{0}")]
    Conflict(String),
    /// Start-up configuration is wrong: fail before any job runs.
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// The queue or the event bus failed (not the database): transient, and no job is lost.
    pub fn is_queue(&self) -> bool {
        match self {
            Error::Queue(_) => true,
            #[cfg(feature = "redis")]
            Error::Redis { .. } => true,
            _ => false,
        }
    }
}

#[cfg(feature = "redis")]
impl From<redis::RedisError> for Error {
    fn from(source: redis::RedisError) -> Self {
        Error::Redis {
            doing: "talking to Redis",
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
