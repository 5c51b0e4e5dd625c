use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[test]
fn first_cut_earlier_timeout_wins_route_on_a_tie() {
    let now = Instant::now();
    let soon = now + Duration::from_millis(100);
    let later = now + Duration::from_millis(200);
    assert_eq!(first_cut(None, None), None);
    assert_eq!(first_cut(Some(soon), None), Some((soon, Cut::PerTry)));
    assert_eq!(first_cut(None, Some(soon)), Some((soon, Cut::Route)));
    assert_eq!(
        first_cut(Some(soon), Some(later)),
        Some((soon, Cut::PerTry))
    );
    assert_eq!(first_cut(Some(later), Some(soon)), Some((soon, Cut::Route)));
    assert_eq!(first_cut(Some(soon), Some(soon)), Some((soon, Cut::Route)));
}

#[test]
fn picked_keeps_the_latest_endpoint_and_its_mesh_tls() {
    let picked = Picked::new();
    assert_eq!(picked.get(), None);
    picked.set(0, false);
    assert_eq!(picked.get(), Some((0, false)));
    picked.set(3, true);
    // Mesh mTLS principals are known once the connection is up.
    assert_eq!(picked.get(), Some((3, false)));
    picked.connected();
    assert_eq!(picked.get(), Some((3, true)));
    // A retry to another endpoint replaces it.
    picked.set(1, false);
    assert_eq!(picked.get(), Some((1, false)));
}
