//! `GET /v1/stream`: the live facts around a player, over a WebSocket.
//!
//! The projector publishes every fact on Redis channels `live:region:<region>` and
//! `live:player:<player>` ([`schemas::read_model::channel`]), and the simulators' live positions
//! on `live:region:<region>`. A stream listens to its player's
//! channel and to every region within `stream.interest_radius` of the avatar, so what stands
//! just across a border is seen. It follows the avatar: each of the player's own facts that
//! places it (spawn, walk, arrival, hand-off, respawn, death) recomputes the regions, and leaving
//! the world drops them. The client never reconnects to cross a border.
//!
//! Every stream of a gateway shares one Redis subscription through the [`Hub`]: a message is
//! read once and handed to each listener. Between the hub and a socket sits a queue of
//! [`BUFFER`] messages: a client that reads slower than facts arrive fills it and is
//! disconnected (close code 1008, "too slow"), so no client can make the gateway hold memory
//! without bound; so is a client that stops reading for `stream.send_timeout_ms` (10 s by
//! default), so none holds its socket and its place under the caps either.
//!
//! A stream lives no longer than its session: it ends (close code [`SESSION_ENDED`], 4001, with
//! "session ended" or "session expired") when the session's end is announced on Redis
//! (`session_ended:<sid>`, see [`announce_ended`]: logout, role change, any end that goes
//! through [`crate::auth::Sessions`]), when the token expires, or when the periodic check of
//! [`crate::open_streams`] finds the session gone, whichever comes first, on whichever gateway
//! holds the stream.
//!
//! A stream also ends when its gateway stops (close code [`GOING_AWAY`], 1001), before the
//! drain deadline runs out.
//!
//! Clients have nothing to say on a stream: a message or frame from them over [`MAX_INCOMING`]
//! bytes closes it (1009), and a player or an address holds only so many streams at once
//! (`stream.max_per_player`, `stream.max_per_ip`; the next gets 429 before the upgrade).
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?access_token=`.
//!
//! - [`upgrade`]: the handshake of `GET /v1/stream`: the token, the session, the caps, the first
//!   subscriptions, then the upgrade.
//! - [`hub`]: the one Redis subscription every stream of the gateway shares, and each stream's
//!   place in it.
//! - [`interest`]: which regions a stream listens to, following its avatar.
//! - [`session_end`]: what ends a stream with its session, and the announcement of that end.
//! - [`socket`]: the per-connection loop: facts out, the client's frames in, the close frame.

pub mod hub;
pub mod interest;
pub mod session_end;
pub mod socket;
pub mod upgrade;

pub use hub::{Delivery, Hub};
pub use interest::{Interest, regions_near};
pub use session_end::{announce_ended, session_channel};
pub use upgrade::stream;

/// Messages queued for one client before it is dropped as too slow.
pub const BUFFER: usize = 256;

/// The close code sent to a client that could not keep up (policy violation).
pub const TOO_SLOW: u16 = 1008;

/// The close code of a stream whose session ended (logout, role change, expiry, any other end).
pub const SESSION_ENDED: u16 = 4001;

/// The close code sent to a client whose message or frame is over [`MAX_INCOMING`].
pub const TOO_BIG: u16 = 1009;

/// The close code of a stream whose gateway is stopping (going away); the client reconnects,
/// to another gateway or to this one once it is back.
pub const GOING_AWAY: u16 = 1001;

/// The close code sent to a client that broke the WebSocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;

/// The largest message, and frame, a client may send on a stream. Clients have nothing to say
/// there (what they send is read and dropped), but tungstenite would otherwise gather up to
/// 64 MiB per message: six clients each sending most of one took a gateway from 103 to 679 MB.
pub const MAX_INCOMING: usize = 4 * 1024;
