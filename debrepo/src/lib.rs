//! Debian repository client (being written).
