//! QUIC transport between gateways. Not built yet.
