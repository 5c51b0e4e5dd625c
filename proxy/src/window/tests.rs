use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn counts_within_the_window_are_summed_per_counter() {
    let w: Window<2> = Window::new_at(Duration::from_secs(1), Instant::now());
    w.add(0, Instant::now());
    w.add(0, Instant::now());
    w.add(1, Instant::now());
    tokio::time::advance(Duration::from_millis(500)).await;
    w.add(0, Instant::now());
    assert_eq!(w.sums(Instant::now()), [3, 1]);
}

#[tokio::test(start_paused = true)]
async fn counts_older_than_the_window_are_forgotten() {
    let w: Window<1> = Window::new_at(Duration::from_secs(1), Instant::now());
    w.add(0, Instant::now());
    tokio::time::advance(Duration::from_millis(950)).await;
    w.add(0, Instant::now());
    assert_eq!(w.sums(Instant::now()), [2]);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(
        w.sums(Instant::now()),
        [1],
        "the first count left the window"
    );
    // Its slot is reused ten slots later, cleared first.
    tokio::time::advance(Duration::from_millis(950)).await;
    w.add(0, Instant::now());
    assert_eq!(w.sums(Instant::now()), [1]);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_counter_is_ignored() {
    let w: Window<1> = Window::new_at(Duration::from_secs(1), Instant::now());
    w.add(5, Instant::now());
    assert_eq!(w.sums(Instant::now()), [0]);
}
