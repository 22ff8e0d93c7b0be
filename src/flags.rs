//! Enum flags: every one is a `clap::ValueEnum` of the crate that owns the type, parsed here so that a wrong
//! value is refused in one line naming the flag, the allowed values and what was given.

use clap::ValueEnum;

/// The allowed values of `E`, as "a, b or c".
pub fn allowed<E: ValueEnum>() -> String {
    let names: Vec<String> = E::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|p| p.get_name().to_string())
        .collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// `value` as an `E`, or "`what` must be a, b or c, found "value"".
pub fn parse<E: ValueEnum>(what: &str, value: &str) -> Result<E, String> {
    E::from_str(value, false)
        .map_err(|_| format!("{what} must be {}, found {value:?}", allowed::<E>()))
}

/// A clap value parser for `E` under the name `flag`.
pub fn one_of<E: ValueEnum + Clone + Send + Sync + 'static>(
    flag: &'static str,
) -> impl Fn(&str) -> Result<E, String> + Clone + Send + Sync + 'static {
    move |value| parse::<E>(flag, value)
}

/// `--part` and `--parts`: this task's share of work split over a job array (extract and train take them).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PartFlags {
    /// Do one share of the work of N tasks: I/N (0 ≤ I < N), or `auto` to read Slurm's
    /// SLURM_ARRAY_TASK_ID/_COUNT or Kubernetes' JOB_COMPLETION_INDEX (with --parts N).
    #[arg(long)]
    pub part: Option<String>,
    /// The number of tasks, for --part auto under a Kubernetes indexed job (its completions).
    #[arg(long)]
    pub parts: Option<u64>,
}

impl PartFlags {
    /// The part these flags ask for, if any; each misuse is refused in one line naming the flag.
    pub fn resolve(&self) -> anyhow::Result<Option<cache_format::parts::Part>> {
        use cache_format::parts::Part;
        let part = match (self.part.as_deref(), self.parts) {
            (None, None) => return Ok(None),
            (None, Some(_)) => anyhow::bail!("--parts goes with --part auto"),
            (Some("auto"), parts) => Part::from_env(parts, |name| std::env::var(name).ok()),
            (Some(_), Some(_)) => {
                anyhow::bail!("--parts goes with --part auto; --part I/N names the count itself")
            }
            (Some(text), None) => Part::parse(text),
        };
        part.map(Some).map_err(|e| anyhow::anyhow!("--part: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::coder::Kind;

    #[test]
    fn names_every_value_and_takes_aliases() {
        assert_eq!(allowed::<Kind>(), "sae, transcoder or skip-transcoder");
        assert_eq!(parse::<Kind>("kind", "sst"), Ok(Kind::SkipTranscoder));
        assert_eq!(
            parse::<Kind>("kind", "mlp"),
            Err("kind must be sae, transcoder or skip-transcoder, found \"mlp\"".to_string())
        );
        assert_eq!(allowed::<cache_format::Side>(), "mlp_in or mlp_out");
    }
}
