use super::*;

#[test]
fn wanted_soft_limit_below_hard_raises_to_hard() {
    assert_eq!(wanted_soft_limit(Some(1024), Some(524_288)), Some(524_288));
}

#[test]
fn wanted_soft_limit_at_hard_keeps_it() {
    assert_eq!(wanted_soft_limit(Some(20_000), Some(20_000)), None);
}

#[test]
fn wanted_soft_limit_unlimited_hard_uses_nr_open_default() {
    assert_eq!(wanted_soft_limit(Some(1024), None), Some(UNLIMITED_NOFILE));
    assert_eq!(wanted_soft_limit(None, None), None);
}

#[test]
fn raise_nofile_lowered_soft_limit_comes_back_to_hard() {
    let start = getrlimit(Resource::Nofile);
    let Some(hard) = start.maximum.filter(|h| *h > 512) else {
        return;
    };
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(512),
            maximum: start.maximum,
        },
    )
    .unwrap();
    let l = raise_nofile().unwrap();
    assert_eq!(l.before, Some(512));
    assert_eq!(l.after, Some(hard));
    assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
}
