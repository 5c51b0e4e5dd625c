use super::*;

#[test]
fn parse_stat_cpu_name_with_spaces_reads_utime_and_stime() {
    let line =
        "1234 (tokio (rt) w) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
    let t = parse_stat_cpu(line).expect("parses");
    assert_eq!((t.user, t.system, t.total()), (2.5, 0.5, 3.0));
}

#[test]
fn parse_stat_cpu_truncated_line_is_none() {
    assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
}

#[test]
fn parse_status_memory_reads_rss_and_hwm_in_mb() {
    let text = "Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
    assert_eq!(
        parse_status_memory(text),
        Some(Memory {
            rss_mb: 10.0,
            hwm_mb: 20.0
        })
    );
}

#[test]
fn cpu_seconds_of_self_is_some() {
    assert!(cpu_seconds(std::process::id()).is_some());
    assert!(memory(std::process::id()).is_some_and(|m| m.rss_mb > 0.0));
}

#[test]
fn peak_resets_to_the_current_rss() {
    let me = std::process::id();
    // Touch 32 MB so the peak is well above what stays resident after the drop.
    let block = vec![1u8; 32 << 20];
    assert!(block.iter().map(|b| *b as usize).sum::<usize>() == 32 << 20);
    drop(block);
    let before = memory(me).expect("own status");
    assert!(reset_peak(me), "clear_refs refused for our own process");
    let after = memory(me).expect("own status");
    assert!(
        after.hwm_mb + 16.0 < before.hwm_mb,
        "peak {} MB not reset (was {} MB)",
        after.hwm_mb,
        before.hwm_mb
    );
}
