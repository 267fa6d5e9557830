//! meshgate-protocol: the native client protocol spoken over QUIC between
//! clients (the Rust client, the CLI) and gateways.
//!
//! # Layout
//! - [`frame`]: length-prefixed MessagePack frames with a size limit,
//!   checked before anything is allocated.
//! - [`messages`]: every request and reply, one QUIC stream per request.
//! - [`error`]: stable error codes on the wire and codec errors.
//! - [`partition`]: the documented key -> partition hash.
//!
//! # A connection
//! 1. The client opens a QUIC connection with ALPN [`ALPN`] and verifies
//!    the node's certificate against the cluster CA.
//! 2. On a first bidirectional stream it sends [`Request::Hello`] with
//!    [`PROTOCOL_VERSION`]; the node answers [`Reply::Hello`] or
//!    [`ErrorCode::UnsupportedVersion`].
//! 3. Every further request gets its own stream: one request frame, the
//!    client finishes its side, one response frame back. Many streams may
//!    be open at once (pipelining); the node caps them per connection.
#![deny(missing_docs)]

pub mod error;
pub mod frame;
pub mod messages;
pub mod partition;
pub mod queues;

pub use error::{ErrorCode, ProtocolError, WireError};
pub use messages::*;
pub use partition::{murmur2, partition_for_key};
pub use queues::*;
