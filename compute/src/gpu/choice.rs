//! `--device`: where a stage runs, chosen at run time, the same way for every stage.

use super::{probe, Probe};
use anyhow::{bail, Result};

/// What the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when a GPU is usable and the run needs nothing the GPU path lacks, else the CPU.
    Auto,
    /// The GPU path's step sequence on the kernels' CPU twins (slow; for tests).
    #[cfg_attr(feature = "clap", value(name = "cpu-twins"))]
    CpuTwins,
}

/// Where the work runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    /// The CPU; under `auto`, with the reason the GPU is not used.
    Cpu {
        fallback: Option<String>,
    },
    Cuda {
        name: String,
        capability: (i32, i32),
    },
    Twins,
}

/// Resolves `choice` against what [`probe`] finds. `gpu_lacks`: why this run cannot take the GPU path even
/// where a GPU is usable (a feature only the CPU path has). `cuda` and `cpu-twins` refuse what they cannot do,
/// naming the flag; `auto` falls back to the CPU and says why.
pub fn resolve(choice: DeviceChoice, gpu_lacks: Option<String>) -> Result<Resolved> {
    Ok(match choice {
        DeviceChoice::Cpu => Resolved::Cpu { fallback: None },
        DeviceChoice::CpuTwins => match gpu_lacks {
            Some(why) => bail!("--device cpu-twins: {why}"),
            None => Resolved::Twins,
        },
        DeviceChoice::Cuda | DeviceChoice::Auto => {
            let cuda = choice == DeviceChoice::Cuda;
            match (probe(), gpu_lacks) {
                (Probe::Ready { name, capability }, None) => Resolved::Cuda { name, capability },
                (_, Some(why)) if cuda => bail!("--device cuda: {why}; use --device cpu"),
                (Probe::Unavailable(why), _) if cuda => bail!("--device cuda: {why}"),
                (Probe::Ready { .. }, Some(why)) | (Probe::Unavailable(why), _) => Resolved::Cpu {
                    fallback: Some(why),
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_fallbacks() {
        let lacks = || Some("AuxK is in the CPU trainer only".to_string());
        assert_eq!(
            resolve(DeviceChoice::Cpu, lacks()).unwrap(),
            Resolved::Cpu { fallback: None }
        );
        let e = resolve(DeviceChoice::CpuTwins, lacks())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--device cpu-twins: AuxK is in the CPU trainer only");
        assert_eq!(
            resolve(DeviceChoice::CpuTwins, None).unwrap(),
            Resolved::Twins
        );
        let e = resolve(DeviceChoice::Cuda, lacks())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--device cuda: AuxK is in the CPU trainer only; use --device cpu"
        );
        // Under auto, a missing GPU is the reason given before what the run needs.
        let auto_fallback = match probe() {
            Probe::Unavailable(why) => Some(why),
            Probe::Ready { .. } => lacks(),
        };
        assert_eq!(
            resolve(DeviceChoice::Auto, lacks()).unwrap(),
            Resolved::Cpu {
                fallback: auto_fallback
            }
        );
        if let Probe::Unavailable(why) = probe() {
            assert_eq!(
                resolve(DeviceChoice::Cuda, None).unwrap_err().to_string(),
                format!("--device cuda: {why}")
            );
            assert_eq!(
                resolve(DeviceChoice::Auto, None).unwrap(),
                Resolved::Cpu {
                    fallback: Some(why)
                }
            );
        }
    }
}
