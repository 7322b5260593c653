//! The control socket of PID 1 and its client, `keelctl`.
//!
//! Init listens on a root-only unix socket ([`SOCKET`]). A client connects,
//! writes one [`Request`] as a JSON object on one line, and reads one
//! [`Response`] line back; then the connection is closed. [`server`] has
//! both ends: [`Server`] for init and [`request`] for `keelctl`.

mod connections;
pub mod protocol;
pub mod server;

pub use protocol::{Request, Response, UnitStatus};
pub use server::{request, ClientError, Responder, Server};

/// Where init listens.
pub const SOCKET: &str = "/run/keel/control.sock";

#[cfg(test)]
mod tests;
