//! Loopback address blocks for one mesh: a random `127.A.B.0/24`, reserved with a lock file so
//! concurrent meshes (in this run or another) never share addresses.
use super::MeshError;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A reserved `127.A.B.0/24`; the reservation ends when this is dropped (or the process dies,
/// since the lock is an OS file lock).
#[derive(Debug)]
pub struct AddrBlock {
    a: u8,
    b: u8,
    // Lock files are never removed: deleting one while another process opens it would let
    // two processes lock different inodes of the same name.
    _lock: File,
}

impl AddrBlock {
    /// Reserves a free block.
    pub fn reserve() -> Result<Self, MeshError> {
        let dir = std::env::temp_dir().join("sluice-conformance-addrs");
        std::fs::create_dir_all(&dir).map_err(|source| MeshError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        for _ in 0..64 {
            // Skip 127.0.x.x, where other local services usually live.
            let (a, b) = (fastrand::u8(16..=250), fastrand::u8(..));
            let lock_path = dir.join(format!("127.{a}.{b}.lock"));
            let Ok(file) = File::create(&lock_path) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue;
            }
            let block = Self { a, b, _lock: file };
            // A leftover process from a killed run may still hold the ports.
            let probe = [
                SocketAddr::new(block.ip(1).into(), 15010),
                SocketAddr::new(block.ip(2).into(), 15001),
            ];
            if probe.iter().all(|a| TcpListener::bind(a).is_ok()) {
                return Ok(block);
            }
        }
        Err(MeshError::Config(
            "could not reserve a free 127.x.y.0/24 loopback block".into(),
        ))
    }

    /// The address `127.A.B.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, host)
    }
}
