//! Address blocks for one mesh: a `/24` reserved with a lock file so concurrent meshes (in this
//! run or another) never share addresses. Local meshes use a random `127.A.B.0/24`; meshes
//! registered in Kubernetes need addresses an EndpointSlice accepts (never loopback), so they use
//! `198.18.0.0/15` (RFC 2544's benchmarking range), made local to this host by one route.
use super::MeshError;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// The routable range meshes registered in Kubernetes live in.
pub const ROUTABLE_RANGE: &str = "198.18.0.0/15";

/// A reserved `/24`; the reservation ends when this is dropped (or the process dies, since the
/// lock is an OS file lock).
#[derive(Debug)]
pub struct AddrBlock {
    net: [u8; 3],
    // Lock files are never removed: deleting one while another process opens it would let
    // two processes lock different inodes of the same name.
    _lock: File,
}

impl AddrBlock {
    /// Reserves a free `127.A.B.0/24`.
    pub fn reserve() -> Result<Self, MeshError> {
        // Skip 127.0.x.x, where other local services usually live.
        Self::reserve_from(|| [127, fastrand::u8(16..=250), fastrand::u8(..)])
    }

    /// Reserves a free `198.(18|19).B.0/24`, first making the whole range local to this host
    /// (`ip route add local 198.18.0.0/15 dev lo`, which needs root) when it is not yet.
    pub fn reserve_routable() -> Result<Self, MeshError> {
        ensure_local_route()?;
        Self::reserve_from(|| [198, fastrand::u8(18..=19), fastrand::u8(..)])
    }

    fn reserve_from(mut pick: impl FnMut() -> [u8; 3]) -> Result<Self, MeshError> {
        let dir = std::env::temp_dir().join("sluice-conformance-addrs");
        std::fs::create_dir_all(&dir).map_err(|source| MeshError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        for _ in 0..64 {
            let net = pick();
            let lock_path = dir.join(format!("{}.{}.{}.lock", net[0], net[1], net[2]));
            let Ok(file) = File::create(&lock_path) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue;
            }
            let block = Self { net, _lock: file };
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
            "could not reserve a free /24 address block".into(),
        ))
    }

    /// The address `N.N.N.host` of this block.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }
}

fn range_is_local() -> bool {
    TcpListener::bind((Ipv4Addr::new(198, 18, 0, 1), 0)).is_ok()
}

fn ensure_local_route() -> Result<(), MeshError> {
    if range_is_local() {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["route", "add", "local", ROUTABLE_RANGE, "dev", "lo"])
        .output();
    // A concurrent run may have added it between the check and the command.
    if range_is_local() {
        return Ok(());
    }
    let why = match out {
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    Err(MeshError::Config(format!(
        "pods registered in Kubernetes need non-loopback addresses: adding the local route \
         {ROUTABLE_RANGE} failed ({why}); run as root, or once: \
         sudo ip route add local {ROUTABLE_RANGE} dev lo"
    )))
}
