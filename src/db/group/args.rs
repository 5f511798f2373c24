//! `rowlock serve`'s options of group commit.

/// `rowlock serve` options of group commit.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupArgs {
    /// Group concurrent lock=wait/none counter changes, and job acknowledgements and claims, into
    /// shared transactions (on|off).
    #[arg(long, env = "ROWLOCK_GROUP_COMMIT", default_value = "on", value_parser = parse_switch,
          action = clap::ArgAction::Set, value_name = "on|off")]
    pub group_commit: bool,

    /// Most ops one group may carry (increments and transaction ops; acknowledgements and claim
    /// limits).
    #[arg(long, env = "ROWLOCK_GROUP_MAX_OPS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub group_max_ops: u64,

    /// How many groups of counters, and as many of jobs, may be in the database at once (each
    /// holds one pooled connection).
    #[arg(long, env = "ROWLOCK_GROUP_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub group_concurrency: u64,
}

impl Default for GroupArgs {
    /// The command line's defaults.
    fn default() -> Self {
        crate::cli::defaults()
    }
}

pub(crate) fn parse_switch(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not '{text}'")),
    }
}
