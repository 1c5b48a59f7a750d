//! The shard-placement flags (`-w/--workers`, `--cpus`, `--share-cpus`, `--pin`), a group
//! flattened into [`super::Cli`], with their validation into [`Shards`]: which CPU each shard gets.
//!
//! It reads the affinity mask and nothing else; it must not start or pin anything (the
//! supervisor does, from the configuration).

use super::error::{FlagError, refuse};
use super::values::{allowed_cpus, format_cpu_list, parse_cpu_list};

/// How many shards run, and where.
#[derive(Debug, clap::Args)]
pub struct ShardFlags {
    /// Shards to run, one process per CPU [default: $WEB_CONCURRENCY when set (as gunicorn), else the
    /// CPUs this process may use]
    #[arg(short = 'w', long = "workers", value_name = "N", hide_default_value = true,
          default_value_t = allowed_cpus().len())]
    pub workers: usize,

    /// CPUs shards run on, e.g. `1-3,6`; with --pin shard i runs on the i-th [default: the affinity mask]
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,

    /// Allow more shards than CPUs: shards then share CPUs, round-robin
    #[arg(long)]
    pub share_cpus: bool,

    /// Pin each shard to one CPU of --cpus (shard i to the i-th), for a machine whose CPUs the shards
    /// have to themselves [default: each shard may run on any CPU of --cpus and the kernel places it,
    /// so a busy neighbour on one CPU (a load generator, a log shipper) does not stall a shard]
    #[arg(long)]
    pub pin: bool,
}

/// The placement part of [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shards {
    /// The CPU of each shard, by index; its length is `-w`.
    pub cpus: Vec<usize>,
    /// Every CPU shards may use (`--cpus`, else the affinity mask).
    pub allowed_cpus: Vec<usize>,
    /// `--share-cpus`.
    pub share_cpus: bool,
    /// `--pin`.
    pub pin: bool,
}

impl ShardFlags {
    /// Checks the CPU list against this process's affinity mask and the shard count against it.
    pub fn into_shards(self) -> Result<Shards, FlagError> {
        let mask = allowed_cpus();
        let allowed = match &self.cpus {
            None => mask.clone(),
            Some(list) => {
                let cpus = parse_cpu_list(list).map_err(|m| refuse("--cpus", m))?;
                if let Some(bad) = cpus.iter().find(|c| !mask.contains(c)) {
                    return Err(refuse(
                        "--cpus",
                        format!("CPU {bad} is not in this process's affinity mask ({})", format_cpu_list(&mask)),
                    ));
                }
                cpus
            }
        };
        if allowed.is_empty() {
            return Err(refuse("--cpus", "no CPUs to run on"));
        }
        if self.workers == 0 {
            return Err(refuse("--workers", "at least one shard is needed"));
        }
        if self.workers > allowed.len() && !self.share_cpus {
            return Err(refuse(
                "--workers",
                format!(
                    "{} shards but only {} CPUs ({}); hitcore runs one shard per CPU, so pass --share-cpus to let \
                     shards share CPUs",
                    self.workers,
                    allowed.len(),
                    format_cpu_list(&allowed)
                ),
            ));
        }
        let cpus = (0..self.workers).map(|i| allowed[i % allowed.len()]).collect();
        Ok(Shards { cpus, allowed_cpus: allowed, share_cpus: self.share_cpus, pin: self.pin })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn shards(args: &[&str]) -> Result<Shards, FlagError> {
        Cli::try_parse_from([&["hitcore"], args].concat()).unwrap().shards.into_shards()
    }

    #[test]
    fn shards_get_cpus_of_the_mask_round_robin_only_when_sharing() {
        let mask = allowed_cpus();
        let n = mask.len();
        let more = (n + 1).to_string();
        assert_eq!(shards(&["-w", &more]).unwrap_err().flag, "--workers");
        let shared = shards(&["-w", &more, "--share-cpus"]).unwrap();
        assert_eq!(shared.cpus.len(), n + 1);
        assert_eq!(shared.cpus[n], mask[0], "round-robin");
        assert_eq!(shards(&["-w", "0"]).unwrap_err().flag, "--workers");
        let outside = (mask.iter().max().unwrap() + 1).to_string();
        assert_eq!(shards(&["--cpus", &outside]).unwrap_err().flag, "--cpus");
        let one = shards(&["-w", "1", "--cpus", &mask[0].to_string(), "--pin"]).unwrap();
        assert_eq!((one.cpus, one.allowed_cpus, one.pin), (vec![mask[0]], vec![mask[0]], true));
    }
}
