//! What the injector and `sluice-proxy init` both check about capture
//! settings, so a value the injector accepts is one `init` takes.

/// Whether `name` is a network interface name as iptables' `-i`/`-o` take it:
/// 1 to 15 letters, digits, `.`, `_`, `-` or `@` (Linux keeps names under 16
/// bytes), optionally ending in `+`, which matches every name with that prefix.
pub fn is_interface_name(name: &str) -> bool {
    let stem = name.strip_suffix('+').unwrap_or(name);
    !stem.is_empty()
        && name.len() <= 15
        && stem != "."
        && stem != ".."
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// Says what [`is_interface_name`] accepts, for error messages.
pub const INTERFACE_NAME_RULE: &str =
    "1-15 letters, digits, '.', '_', '-' or '@', with an optional trailing '+'";

#[cfg(test)]
mod tests {
    use super::is_interface_name;

    #[test]
    fn interface_names_as_iptables_takes_them() {
        for good in [
            "eth0",
            "net1",
            "eth+",
            "veth-a.10",
            "br_0",
            "if@1",
            "abcdefghijklmno",
        ] {
            assert!(is_interface_name(good), "{good:?}");
        }
        for bad in [
            "",
            "+",
            "eth 0",
            "a/b",
            "eth+0",
            "..",
            ".",
            "abcdefghijklmnop",
            "ö0",
            "e:1",
        ] {
            assert!(!is_interface_name(bad), "{bad:?}");
        }
    }
}
