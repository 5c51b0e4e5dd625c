//! When a config source publishes a change: at once for the first change
//! after a quiet period (the leading edge), otherwise once the source has
//! been quiet for the debounce period (the trailing edge).
//!
//! A burst is a run of events with gaps shorter than the period. Its first
//! publish may go out at once; every later one in the same burst waits for
//! quiet, so a writer touching many objects in a row costs one push more
//! than before (its first object, then the rest together; a burst longer
//! than the longest wait is still published every ten periods) and a steady
//! stream of changes is coalesced as before. A lone edit, the common case, reaches the
//! proxies without waiting out the period. Linkerd's destination controller
//! pushes every watch event as it comes; Istio always waits out its debounce.

use std::time::{Duration, Instant};

/// Tracks bursts of source events and whether their leading edge is spent.
#[derive(Debug)]
pub struct Edge {
    period: Duration,
    last_event: Option<Instant>,
    spent: bool,
}

impl Edge {
    /// A source that has seen nothing yet: its first event may publish at once.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last_event: None,
            spent: false,
        }
    }

    /// Records an event seen at `at`. An event a whole period or more after
    /// the one before it starts a new burst.
    pub fn note(&mut self, at: Instant) {
        let gap = self
            .last_event
            .map(|last| at.saturating_duration_since(last));
        if gap.is_none_or(|gap| gap >= self.period) {
            self.spent = false;
        }
        self.last_event = Some(self.last_event.map_or(at, |last| last.max(at)));
    }

    /// Whether the current burst may still publish without waiting.
    pub fn leading(&self) -> bool {
        !self.spent
    }

    /// Records a publish: the rest of this burst waits for quiet.
    pub fn published(&mut self) {
        self.spent = true;
    }
}

/// Label value of `sluice_config_publishes_total`.
pub fn label(leading: bool) -> &'static str {
    if leading { "leading" } else { "trailing" }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(100);

    #[test]
    fn only_the_first_publish_of_a_burst_is_leading() {
        let t0 = Instant::now();
        let mut edge = Edge::new(P);
        assert!(edge.leading(), "a fresh source has been quiet");
        edge.note(t0);
        assert!(edge.leading());
        edge.published();
        // 60 ms later: the same burst.
        edge.note(t0 + Duration::from_millis(60));
        assert!(!edge.leading());
        // Gaps under the period keep the burst going however long it lasts.
        edge.note(t0 + Duration::from_millis(150));
        edge.note(t0 + Duration::from_millis(240));
        assert!(!edge.leading());
        // A whole period of quiet ends it.
        edge.note(t0 + Duration::from_millis(340));
        assert!(edge.leading());
    }

    #[test]
    fn events_noted_late_and_out_of_order_do_not_start_a_burst() {
        let t0 = Instant::now();
        let mut edge = Edge::new(P);
        edge.note(t0 + Duration::from_millis(50));
        edge.published();
        // An older event drained after a newer one: no gap, no new burst.
        edge.note(t0);
        assert!(!edge.leading());
        edge.note(t0 + Duration::from_millis(120));
        assert!(!edge.leading(), "70 ms after the newest event seen");
    }

    #[test]
    fn an_unpublished_burst_keeps_its_leading_edge() {
        let t0 = Instant::now();
        let mut edge = Edge::new(P);
        edge.note(t0);
        edge.note(t0 + Duration::from_millis(10));
        assert!(edge.leading(), "nothing published yet in this burst");
    }
}
