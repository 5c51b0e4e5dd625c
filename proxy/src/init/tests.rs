use clap::Parser as _;

use super::rules::render;
use super::{Capture, Family, InitFlags, Scope};

fn capture(args: &[&str]) -> Result<Capture, super::BadFlag> {
    let flags = InitFlags::try_parse_from(std::iter::once("init").chain(args.iter().copied()))
        .expect("flags parse");
    Capture::try_from(&flags)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn render_defaults_capture_everything_like_istio() {
    let c = capture(&["--proxy-uid", "1337"]).unwrap();
    let text = render(&c, Family::V4, "");
    let expected = "\
*nat
:SLUICE_INBOUND - [0:0]
:SLUICE_IN_REDIRECT - [0:0]
:SLUICE_OUTPUT - [0:0]
:SLUICE_REDIRECT - [0:0]
-A SLUICE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A SLUICE_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j SLUICE_INBOUND
-A SLUICE_INBOUND -p tcp --dport 15001 -j RETURN
-A SLUICE_INBOUND -p tcp --dport 15006 -j RETURN
-A SLUICE_INBOUND -p tcp --dport 15000 -j RETURN
-A SLUICE_INBOUND -p tcp --dport 15021 -j RETURN
-A SLUICE_INBOUND -p tcp --dport 15090 -j RETURN
-A SLUICE_INBOUND -p tcp -j SLUICE_IN_REDIRECT
-A OUTPUT -p tcp -j SLUICE_OUTPUT
-A SLUICE_OUTPUT ! -d 127.0.0.0/8 -o lo -p tcp -m owner --uid-owner 1337 -j SLUICE_IN_REDIRECT
-A SLUICE_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A SLUICE_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A SLUICE_OUTPUT ! -d 127.0.0.0/8 -o lo -p tcp -m owner --gid-owner 1337 -j SLUICE_IN_REDIRECT
-A SLUICE_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A SLUICE_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A SLUICE_OUTPUT -d 127.0.0.0/8 -j RETURN
-A SLUICE_OUTPUT -j SLUICE_REDIRECT
COMMIT
";
    assert_eq!(text, expected);
}

#[test]
fn render_explicit_lists_redirect_only_listed_and_skip_excluded() {
    let c = capture(&[
        "--proxy-uid",
        "1337",
        "--proxy-gid",
        "1400",
        "--outbound-port",
        "16001",
        "--inbound-port",
        "16006",
        "--include-outbound-cidrs",
        "10.0.0.0/8, 192.168.1.7",
        "--exclude-outbound-cidrs",
        "10.96.0.1/32",
        "--include-inbound-ports",
        "8080,9090",
        "--exclude-inbound-ports",
        "22",
        "--exclude-outbound-ports",
        "5432",
    ])
    .unwrap();
    let text = render(&c, Family::V4, "");
    let l = lines(&text);
    for want in [
        "-A SLUICE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006",
        "-A SLUICE_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
        "-A SLUICE_INBOUND -p tcp --dport 16001 -j RETURN",
        "-A SLUICE_INBOUND -p tcp --dport 22 -j RETURN",
        "-A SLUICE_INBOUND -p tcp --dport 8080 -j SLUICE_IN_REDIRECT",
        "-A SLUICE_INBOUND -p tcp --dport 9090 -j SLUICE_IN_REDIRECT",
        "-A SLUICE_OUTPUT -p tcp --dport 5432 -j RETURN",
        "-A SLUICE_OUTPUT -m owner --gid-owner 1400 -j RETURN",
        "-A SLUICE_OUTPUT -d 10.96.0.1/32 -j RETURN",
        "-A SLUICE_OUTPUT -d 10.0.0.0/8 -j SLUICE_REDIRECT",
        "-A SLUICE_OUTPUT -d 192.168.1.7/32 -j SLUICE_REDIRECT",
    ] {
        assert!(l.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(!l.contains(&"-A SLUICE_INBOUND -p tcp -j SLUICE_IN_REDIRECT"));
    assert!(!l.contains(&"-A SLUICE_OUTPUT -j SLUICE_REDIRECT"));
    // Exclusions come before the redirects they override.
    let pos = |s: &str| l.iter().position(|x| *x == s).unwrap();
    assert!(
        pos("-A SLUICE_OUTPUT -d 10.96.0.1/32 -j RETURN")
            < pos("-A SLUICE_OUTPUT -d 10.0.0.0/8 -j SLUICE_REDIRECT")
    );
    assert!(
        pos("-A SLUICE_OUTPUT -m owner --uid-owner 1337 -j RETURN")
            < pos("-A SLUICE_OUTPUT -d 10.0.0.0/8 -j SLUICE_REDIRECT")
    );
}

#[test]
fn render_empty_includes_install_no_jumps() {
    let c = capture(&[
        "--include-outbound-cidrs",
        "",
        "--include-inbound-ports",
        "",
    ])
    .unwrap();
    let text = render(&c, Family::V4, "");
    assert!(!text.contains("PREROUTING"), "{text}");
    assert!(!text.contains("-A OUTPUT"), "{text}");
    // The chains are still declared, so a re-run flushes old rules away.
    assert!(text.contains(":SLUICE_OUTPUT - [0:0]"));
}

#[test]
fn render_existing_jumps_are_deleted_first_for_idempotency() {
    let c = capture(&[]).unwrap();
    let existing = "\
-P PREROUTING ACCEPT
-P OUTPUT ACCEPT
-N SLUICE_INBOUND
-A PREROUTING -p tcp -j SLUICE_INBOUND
-A PREROUTING -p udp -j KEEP_ME
-A OUTPUT -p tcp -j SLUICE_OUTPUT
-A SLUICE_OUTPUT -j SLUICE_REDIRECT
";
    let text = render(&c, Family::V4, existing);
    let l = lines(&text);
    assert!(l.contains(&"-D PREROUTING -p tcp -j SLUICE_INBOUND"));
    assert!(l.contains(&"-D OUTPUT -p tcp -j SLUICE_OUTPUT"));
    assert!(!text.contains("KEEP_ME"));
    assert!(!text.contains("-D SLUICE_OUTPUT"));
    let del = l.iter().position(|x| x.starts_with("-D ")).unwrap();
    let add = l
        .iter()
        .position(|x| x.starts_with("-A PREROUTING"))
        .unwrap();
    assert!(del < add);
}

#[test]
fn render_v6_uses_v6_loopback_and_only_v6_cidrs() {
    let c = capture(&[
        "--include-outbound-cidrs",
        "10.0.0.0/8,fd00::/8",
        "--exclude-outbound-cidrs",
        "fd00::1",
    ])
    .unwrap();
    let text = render(&c, Family::V6, "");
    assert!(
        text.contains("-A SLUICE_OUTPUT -d ::1/128 -j RETURN"),
        "{text}"
    );
    assert!(text.contains("-A SLUICE_OUTPUT -d fd00::1/128 -j RETURN"));
    assert!(text.contains("-A SLUICE_OUTPUT -d fd00::/8 -j SLUICE_REDIRECT"));
    assert!(!text.contains("10.0.0.0"));
}

#[test]
fn render_v6_with_only_v4_includes_skips_outbound() {
    let c = capture(&["--include-outbound-cidrs", "10.0.0.0/8"]).unwrap();
    let text = render(&c, Family::V6, "");
    assert!(!text.contains("-A OUTPUT"), "{text}");
    assert!(text.contains("-A PREROUTING -p tcp -j SLUICE_INBOUND"));
}

#[test]
fn capture_bad_values_name_the_flag() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--include-outbound-cidrs", "10.0.0.0/33"],
            "--include-outbound-cidrs",
        ),
        (
            &["--exclude-outbound-cidrs", "10.0.0/8"],
            "--exclude-outbound-cidrs",
        ),
        (
            &["--include-inbound-ports", "80,http"],
            "--include-inbound-ports",
        ),
        (&["--exclude-inbound-ports", "0"], "--exclude-inbound-ports"),
        (&["--outbound-port", "0"], "--outbound-port"),
    ];
    for (args, flag) in cases {
        let err = capture(args).unwrap_err();
        assert_eq!(err.flag, flag);
        let msg = err.to_string();
        assert!(msg.starts_with(flag), "{msg}");
    }
    let err = capture(&["--include-inbound-ports", "80,http"]).unwrap_err();
    assert!(err.to_string().contains("\"http\""), "{err}");
}

#[test]
fn capture_star_and_defaults_parse() {
    let c = capture(&["--proxy-uid", "7"]).unwrap();
    assert_eq!(c.proxy_gid, 7);
    assert_eq!(c.include_outbound_cidrs, Scope::All);
    assert_eq!(c.include_inbound_ports, Scope::All);
    assert!(c.exclude_outbound_ports.is_empty());
}

#[test]
fn capture_injector_contract_argv_parses() {
    // The exact argv control-plane/src/inject/capture.rs produces by default.
    let c = capture(&[
        "--proxy-uid",
        "1337",
        "--outbound-port",
        "15001",
        "--inbound-port",
        "15006",
        "--include-outbound-cidrs",
        "*",
        "--exclude-outbound-cidrs",
        "",
        "--include-inbound-ports",
        "*",
        "--exclude-inbound-ports",
        "15021,15090",
        "--exclude-outbound-ports",
        "",
    ])
    .unwrap();
    assert_eq!(c.include_outbound_cidrs, Scope::All);
    assert!(c.exclude_outbound_cidrs.is_empty());
    assert_eq!(c.exclude_inbound_ports, vec![15021, 15090]);
    let text = render(&c, Family::V4, "");
    // Proxy ports already in the exclude list get one RETURN each.
    assert_eq!(text.matches("--dport 15021 -j RETURN").count(), 1, "{text}");
}

#[test]
fn render_excluded_interfaces_return_first_both_ways() {
    let c = capture(&["--exclude-interfaces", "net1, eth2+"]).unwrap();
    assert_eq!(c.exclude_interfaces, ["net1", "eth2+"]);
    let text = render(&c, Family::V4, "");
    let l = lines(&text);
    let pos = |s: &str| {
        l.iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("missing {s:?} in\n{text}"))
    };
    for iface in ["net1", "eth2+"] {
        // Arriving on it: not redirected inbound, before any port rule.
        let inbound = pos(&format!("-A SLUICE_INBOUND -i {iface} -j RETURN"));
        assert!(inbound < pos("-A SLUICE_INBOUND -p tcp --dport 15001 -j RETURN"));
        assert!(inbound < pos("-A SLUICE_INBOUND -p tcp -j SLUICE_IN_REDIRECT"));
        // Leaving through it: not redirected outbound.
        let outbound = pos(&format!("-A SLUICE_OUTPUT -o {iface} -j RETURN"));
        assert!(outbound > pos("-A OUTPUT -p tcp -j SLUICE_OUTPUT"));
        assert!(outbound < pos("-A SLUICE_OUTPUT -j SLUICE_REDIRECT"));
    }
    // None by default.
    let plain = render(&capture(&[]).unwrap(), Family::V4, "");
    assert!(
        !plain.contains(" -i ") && !plain.contains("-o net"),
        "{plain}"
    );
}

#[test]
fn capture_bad_interface_names_the_flag() {
    for bad in ["eth 0", "a/b", "abcdefghijklmnop", "+", "..", "eth+0"] {
        let err = capture(&["--exclude-interfaces", bad]).unwrap_err();
        assert_eq!(err.flag, "--exclude-interfaces", "{bad:?}");
        assert!(err.to_string().contains("interface name"), "{err}");
    }
}
