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

#[tokio::test(start_paused = true)]
async fn a_stale_writer_never_moves_a_slot_back() {
    let start = Instant::now();
    let w: Window<1> = Window::new_at(Duration::from_secs(1), start);
    tokio::time::advance(Duration::from_millis(1_050)).await;
    w.add(0, Instant::now());
    // A clock reading from a whole window ago maps to the same slot, older.
    w.add(0, start);
    assert_eq!(w.sums(Instant::now()), [1]);
}

#[test]
fn concurrent_writers_lose_no_count_across_a_slot_change() {
    let began = Instant::now();
    let w = std::sync::Arc::new(Window::<1>::new_at(Duration::from_millis(10), began));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let w = std::sync::Arc::clone(&w);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    w.add(0, Instant::now());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every count made within the last window is there, none twice: the
    // window can only hold at most what was added.
    let sum = w.sums(Instant::now())[0];
    assert!(sum <= 40_000, "{sum}");
    if began.elapsed() < Duration::from_millis(10) {
        assert_eq!(sum, 40_000, "all counts within one window survive");
    }
}
