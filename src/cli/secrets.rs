//! The passwords that come from files rather than flags: `--redis-password-file`,
//! `--sentinel-password-file` and the systemd credentials they default to (`redis-password`,
//! `sentinel-password` under `$CREDENTIALS_DIRECTORY`), so that a password can stay out of URLs,
//! `ps` and every environment. It owns reading those files and the rules on where a password may
//! come from; its errors name the flag and the file, never the contents. It must not parse URLs or
//! validate any other flag ([`super::Cli::into_config`] does).

use std::path::{Path, PathBuf};

use super::error::{FlagError, refuse};

/// The systemd credential `--redis-password-file` defaults to: `LoadCredential=redis-password:…`.
pub const PASSWORD_CREDENTIAL: &str = "redis-password";
/// The systemd credential `--sentinel-password-file` defaults to (with a redis+sentinel:// URL).
pub const SENTINEL_CREDENTIAL: &str = "sentinel-password";

/// The sentinels' password: `--sentinel-password`, else `--sentinel-password-file`, else the
/// systemd credential `sentinel-password` when the URL is a Sentinel one. The flags are refused
/// with any other URL (clap refuses them together).
pub(super) fn sentinel_password(
    flag: Option<String>,
    file: Option<&Path>,
    sentinel: bool,
) -> Result<Option<String>, FlagError> {
    const FILE: &str = "--sentinel-password-file";
    match (flag, file) {
        (Some(_), _) if !sentinel => Err(refuse("--sentinel-password", "only a redis+sentinel:// URL asks sentinels")),
        (Some(password), _) => Ok(Some(password)),
        (None, Some(_)) if !sentinel => Err(refuse(FILE, "only a redis+sentinel:// URL asks sentinels")),
        (None, Some(path)) => read_secret(FILE, path, false),
        (None, None) => match credential(SENTINEL_CREDENTIAL).filter(|_| sentinel) {
            Some(path) => read_secret(FILE, &path, true),
            None => Ok(None),
        },
    }
}

/// The Redis password from `--redis-password-file`, or else from the systemd credential
/// `redis-password` when the URL has none (empty: no password). A file given together with a password in the URL is refused: one of them would be
/// silently ignored.
pub(super) fn redis_password(file: Option<&Path>, url_has_one: bool) -> Result<Option<String>, FlagError> {
    const FLAG: &str = "--redis-password-file";
    let (path, credential) = match file {
        Some(_) if url_has_one => {
            return Err(refuse(FLAG, "the Redis URL has a password too; give it in one place only"));
        }
        Some(path) => (path.to_path_buf(), false),
        None if url_has_one => return Ok(None),
        None => match credential(PASSWORD_CREDENTIAL) {
            Some(path) => (path, true),
            None => return Ok(None),
        },
    };
    read_secret(FLAG, &path, credential)
}

/// The systemd credential `name`'s file, when systemd passes one (`$CREDENTIALS_DIRECTORY`).
fn credential(name: &str) -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("CREDENTIALS_DIRECTORY")?).join(name);
    path.exists().then_some(path)
}

/// A password file's one line, for `flag`; `credential`: a systemd credential, where empty means none.
fn read_secret(flag: &'static str, path: &Path, credential: bool) -> Result<Option<String>, FlagError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| refuse(flag, format!("cannot read {}: {e}", path.display())))?;
    // One line, as `echo secret > file` and systemd-creds write it; the line end is not part of it.
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    // An empty credential means "no password": the shipped unit always loads
    // /etc/hitcore/redis-password (LoadCredential= fails the start if the file is missing), and the
    // package installs it empty. A file named on purpose must not be empty.
    if password.is_empty() && credential {
        return Ok(None);
    }
    if password.is_empty() {
        return Err(refuse(flag, format!("{} is empty", path.display())));
    }
    if password.contains('\n') {
        return Err(refuse(flag, format!("{} has more than one line", path.display())));
    }
    Ok(Some(password.to_string()))
}
