use super::Picked;

#[test]
fn picked_keeps_the_latest_endpoint_and_its_mesh_tls() {
    let picked = Picked::new();
    assert_eq!(picked.get(), None);
    picked.set(0, false);
    assert_eq!(picked.get(), Some((0, false)));
    picked.set(3, true);
    assert_eq!(picked.get(), Some((3, true)));
    // A retry to another endpoint replaces it.
    picked.set(1, false);
    assert_eq!(picked.get(), Some((1, false)));
}
