//! Free ports on the loopback interface.

use std::net::{Ipv4Addr, TcpListener};

/// `n` distinct ports on 127.0.0.1 that nothing listens on right now.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A free port for a Redis Cluster node: the node also listens on the port 10,000 above it (the
/// cluster bus), so the port must be at most 55,535 and the one above free too.
pub fn free_cluster_port() -> std::io::Result<u16> {
    for _ in 0..1000 {
        let port = fastrand::u16(1024..=55_535);
        let (Ok(_client), Ok(_bus)) = (
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)),
            TcpListener::bind((Ipv4Addr::LOCALHOST, port + 10_000)),
        ) else {
            continue;
        };
        return Ok(port);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port with a free cluster bus port",
    ))
}
