//! [`FlagError`]: a flag whose value cannot be used, named as the user types it. Every part of
//! the command line returns it; it must hold no secret (messages never quote a password).

/// A flag whose value cannot be used, with the flag's name for the message.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for '{flag}': {message}")]
pub struct FlagError {
    /// The flag, as the user would type it.
    pub flag: &'static str,
    /// What is wrong, without echoing secrets.
    pub message: String,
}

/// A refusal of `flag`, saying why.
pub(super) fn refuse(flag: &'static str, message: impl Into<String>) -> FlagError {
    FlagError { flag, message: message.into() }
}
