use super::*;

#[test]
fn slots_beyond_the_cap_are_refused_until_one_is_released() {
    let mut held: Vec<Slot> = (0..MAX_IN_FLIGHT).map_while(|_| Slot::take()).collect();
    assert_eq!(held.len(), MAX_IN_FLIGHT);
    assert!(Slot::take().is_none(), "one past the cap");
    held.pop();
    let again = Slot::take();
    assert!(again.is_some(), "a released slot is free again");
    drop(again);
    drop(held);
    assert!(Slot::take().is_some());
}

#[test]
fn shadow_authority_keeps_the_port() {
    assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
    assert_eq!(shadow_authority("reviews"), "reviews-shadow");
}
