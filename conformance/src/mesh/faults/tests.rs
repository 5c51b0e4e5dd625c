use super::*;

#[test]
fn proc_stats_of_this_process_reads_rss_and_fds() {
    let s = ProcStats::read(std::process::id()).unwrap();
    assert!(s.rss_kib > 100, "{s:?}");
    assert!(s.fds >= 3, "{s:?}");
}

#[test]
fn proc_stats_of_a_missing_process_is_none() {
    // Above the kernel's pid_max ceiling (4,194,304), so never a live process.
    assert_eq!(ProcStats::read(4_194_305), None);
}

#[test]
fn find_pid_by_flag_and_value_finds_only_that_process() {
    let value = format!("fault-test-{}", std::process::id());
    let mut child = std::process::Command::new("sh")
        // Two commands, so no shell replaces itself with `sleep`.
        .args(["-c", "sleep 5; true", "--marker", &value])
        .spawn()
        .unwrap();
    // Until the child has exec'd, its cmdline is this test's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut found = None;
    while found.is_none() && std::time::Instant::now() < deadline {
        found = find_pid(Path::new("/bin/sh"), "--marker", &value);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let other = find_pid(Path::new("/bin/sh"), "--marker", "no-such-value");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(found, Some(child.id()));
    assert_eq!(other, None);
}
