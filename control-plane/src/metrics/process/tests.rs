use super::*;

#[test]
fn parse_stat_with_spaces_in_the_name_reads_cpu_memory_and_start() {
    // pid (comm) state ppid ... utime=14 stime=15 ... starttime=22 vsize=23 rss=24
    let mut fields: Vec<String> = (3..=30).map(|i| format!("{i}")).collect();
    fields[14 - 3] = "250".into(); // utime ticks
    fields[15 - 3] = "50".into(); // stime ticks
    fields[22 - 3] = "1000".into(); // start, ticks after boot
    fields[23 - 3] = "123456".into(); // vsize bytes
    fields[24 - 3] = "10".into(); // rss pages
    let stat = format!("42 (sluice (ctl) x) {}", fields.join(" "));
    let s = parse(&stat, Some(1_700_000_000.0), 4096.0);
    assert_eq!(s.cpu_seconds, Some(3.0));
    assert_eq!(s.resident_bytes, Some(40960.0));
    assert_eq!(s.virtual_bytes, Some(123456.0));
    assert_eq!(s.start_time_seconds, Some(1_700_000_010.0));
}

#[test]
fn parse_garbage_reports_nothing() {
    assert_eq!(parse("garbage", None, 4096.0), Sample::default());
}

#[test]
fn collector_encodes_this_process() {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(ProcessCollector));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
    ] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rss > 1_000_000.0,
        "a test process uses more than 1 MB: {rss}"
    );
}
