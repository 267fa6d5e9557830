//! The consumer-group coordinator. Not built yet.
