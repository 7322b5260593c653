//! Host-side ports for QEMU's user-mode port forwarding (127.0.0.1 only).

use std::net::{Ipv4Addr, TcpListener};

use crate::HarnessError;

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it).
/// QEMU binds it shortly after; another process could take it in between, which
/// makes QEMU fail to start with an error naming the port.
pub fn free_local_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(HarnessError::PickPort)?;
    let port = listener
        .local_addr()
        .map_err(HarnessError::PickPort)?
        .port();
    Ok(port)
}
