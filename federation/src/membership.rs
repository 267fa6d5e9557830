//! SWIM membership (foca). Not built yet.
