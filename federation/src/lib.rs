//! meshgate-federation: how gateways of all regions find and talk to each
//! other.
//!
//! # Layout
//! - [`transport`]: QUIC endpoints (quinn) with mutual TLS from a cluster
//!   CA (rustls, rcgen), built by one constructor over an abstract UDP
//!   socket and runtime, so production passes real sockets and the
//!   simulation passes turmoil's (`TurmoilUdpSocket` + `quinn::TokioRuntime`);
//!   peer links that keep one authenticated connection per remote gateway
//!   with bounded, seeded backoff, and hand incoming peers to their owner.
//! - [`membership`]: SWIM membership (foca) with authenticated gossip,
//!   member metadata and versioned cluster-wide broadcasts.
//! - [`mirror`]: mirroring rules and the pull protocol between gateways
//!   (see `mirror/design.md` for the semantics).
#![deny(missing_docs)]

pub mod membership;
pub mod mirror;
pub mod transport;
