//! Flag values that need more than a number: CPU lists, users and groups, file modes, seconds.
//! (Listen addresses are [`crate::bind`]'s.)
//!
//! Pure parsing plus the lookups a value needs (the affinity mask, the passwd and group databases).
//! It must not open sockets or files; `cli` names the flag in every refusal, so messages here say
//! only what is wrong with the value.

use std::time::Duration;

use nix::unistd::{Group, Uid, User};

/// The CPUs in this process's affinity mask, ascending.
pub fn allowed_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    cpus.sort_unstable();
    cpus
}

/// Parses `1-3,6` into `[1, 2, 3, 6]`, keeping the order given and dropping repeats.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("'{s}' is not a CPU number"));
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err(format!("'{part}' is an empty range"));
        }
        for cpu in lo..=hi {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        return Err("expected a list such as 0-3,6".into());
    }
    Ok(cpus)
}

/// Formats CPUs as ranges (moved to the leaf [`crate::process`], which the supervisor and shards
/// share).
pub use crate::process::format_cpu_list;

/// A user name or numeric uid, with the user's primary gid from the passwd database.
///
/// A numeric uid without a passwd entry (common in containers) is still a uid, but it has no
/// primary group: the gid is `None` and the caller needs `-g`. The old guess, gid = uid, ran shards
/// in whatever group happened to have that number.
pub fn lookup_user(name: &str) -> Result<(u32, Option<u32>), String> {
    let uid = name.parse::<u32>().ok();
    let found = match uid {
        Some(uid) => User::from_uid(Uid::from_raw(uid)),
        None => User::from_name(name),
    };
    match (found, uid) {
        (Ok(Some(user)), _) => Ok((user.uid.as_raw(), Some(user.gid.as_raw()))),
        (Ok(None), Some(uid)) => Ok((uid, None)),
        (Ok(None), None) => Err(format!("no such user '{name}'")),
        (Err(e), _) => Err(format!("cannot look up user '{name}': {e}")),
    }
}

/// A group name or numeric gid. A number is taken as a gid even without a group entry: unlike a
/// user, a group needs nothing else from the database.
pub fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(format!("no such group '{name}'")),
        Err(e) => Err(format!("cannot look up group '{name}': {e}")),
    }
}

/// File permissions in octal (`660`, `0660`, `0o660`), at most 777.
pub fn octal_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim().trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("'{text}' is not a file mode in octal, such as 660")),
    }
}

/// Seconds as a whole or decimal number (`2`, `0.5`).
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("'{text}' is not a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// A duration as [`seconds`] reads it back (`2`, `0.1`): how a default written as a
/// [`Duration`] const in `config::defaults` becomes the flag's default text, shown by `--help`.
pub fn seconds_text(duration: Duration) -> String {
    duration.as_secs_f64().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1-3,6"), Ok(vec![1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("3,1,3"), Ok(vec![3, 1]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn modes() {
        assert_eq!(octal_mode("660"), Ok(0o660));
        assert_eq!(octal_mode("0660"), Ok(0o660));
        assert_eq!(octal_mode("0o600"), Ok(0o600));
        assert!(octal_mode("999").is_err());
        assert!(octal_mode("1777").is_err());
    }

    #[test]
    fn seconds_accept_decimals() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
        for d in [Duration::from_secs(2), Duration::from_millis(100), Duration::from_secs(60), Duration::ZERO] {
            assert_eq!(seconds(&seconds_text(d)), Ok(d), "{d:?} as {}", seconds_text(d));
        }
        assert_eq!(seconds_text(Duration::from_millis(100)), "0.1");
        assert_eq!(seconds_text(Duration::from_secs(30)), "30");
    }

    #[test]
    fn users_by_name_or_uid_with_their_primary_group() {
        assert_eq!(lookup_user("root"), Ok((0, Some(0))));
        assert_eq!(lookup_user("0"), Ok((0, Some(0))));
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        let expected = (nobody.uid.as_raw(), Some(nobody.gid.as_raw()));
        assert_eq!(lookup_user("nobody"), Ok(expected));
        assert_eq!(lookup_user(&expected.0.to_string()), Ok(expected));
        // nobody's primary group (nogroup) is not gid = uid on Debian: the old guess was wrong.
        assert!(lookup_user("no-such-user-here").unwrap_err().contains("no-such-user-here"));
        assert_eq!(lookup_user("4000000000"), Ok((4000000000, None)), "no passwd entry: no primary group");
    }

    #[test]
    fn groups_by_name_or_gid() {
        assert_eq!(lookup_group("root"), Ok(0));
        assert_eq!(lookup_group("1234"), Ok(1234));
        assert!(lookup_group("no-such-group-here").unwrap_err().contains("no-such-group-here"));
    }
}
