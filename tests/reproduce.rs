//! `scripts/reproduce_paper.sh --scale smoke` end to end on the real model (two layers, the whole sweep with
//! both skip-transcoder starts, eval with the linear baseline, the report), and the report's files and columns.
mod common;
use common::{model, root, sc};

fn section<'a>(md: &'a str, title: &str) -> &'a str {
    let start = md
        .find(title)
        .unwrap_or_else(|| panic!("no section {title:?} in\n{md}"));
    let rest = &md[start + title.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The table rows (lines starting with `| ` and a digit: a layer) of a section.
fn rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn reproduce_smoke_writes_the_whole_report() {
    model();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rp");
    let status = std::process::Command::new(root().join("scripts/reproduce_paper.sh"))
        .args(["--scale", "smoke", "--out"])
        .arg(&out)
        .env("SPARSECODER", env!("CARGO_BIN_EXE_sparsecoder"))
        .status()
        .unwrap();
    assert!(status.success(), "reproduce_paper.sh --scale smoke failed");
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();

    // Table 1 layout: 4 coders (SAE, ST, SST, SST regression start) and the linear row at each layer.
    let t1 = rows(section(&md, "(the layout of the paper's Table 1)"));
    assert_eq!(t1.len(), 2 * 5, "{md}");
    for r in &t1 {
        assert_eq!(r.len(), 11, "{r:?}");
        let (fvu, ve): (f64, f64) = (r[4].parse().unwrap(), r[5].parse().unwrap());
        assert!((100.0 * (1.0 - fvu) - ve).abs() < 0.02, "{r:?}");
        assert!(r[6].parse::<f64>().unwrap().is_finite(), "{r:?}");
    }
    for layer in ["1", "3"] {
        let names: Vec<&str> = t1
            .iter()
            .filter(|r| r[0] == layer)
            .map(|r| r[1].as_str())
            .collect();
        assert_eq!(
            names[..4],
            [
                "sae-mlp_out-k16-l1152",
                "sst-k16-l1152",
                "sst-k16-l1152-reginit",
                "st-k16-l1152"
            ]
        );
        assert!(names[4].starts_with("linear"), "{names:?}");
    }
    // Table 3 layout: one row per layer and k, every column filled.
    let t3 = rows(section(&md, "(the layout of the paper's Table 3)"));
    assert_eq!(t3.len(), 2, "{md}");
    assert!(
        t3.iter()
            .all(|r| r.len() == 8 && r.iter().all(|c| c != "-")),
        "{t3:?}"
    );
    // Sparse probing at each layer: the two raw sides and the 4 coders, accuracies in [0, 1].
    let probing = rows(section(&md, "## Sparse probing"));
    assert_eq!(probing.len(), 2 * 6, "{md}");
    for r in &probing {
        for a in &r[2..5] {
            assert!((0.0..=1.0).contains(&a.parse::<f64>().unwrap()), "{r:?}");
        }
    }
    // Absorption at each layer: the 4 coders, fractions in [0, 1] where enough letters count.
    let absorbed = rows(section(&md, "## Feature absorption"));
    assert_eq!(absorbed.len(), 2 * 4, "{md}");
    for r in &absorbed {
        assert!(["decoder", "encoder"].contains(&r[3].as_str()), "{r:?}");
        for a in r[5..7].iter().filter(|a| *a != "-") {
            assert!((0.0..=1.0).contains(&a.parse::<f64>().unwrap()), "{r:?}");
        }
    }
    // Each ordering is judged, with its numbers.
    let orderings = rows(section(&md, "## The paper's orderings"));
    assert_eq!(orderings.len(), 2 * 8, "{md}");
    let verdicts = ["**holds**", "**does not hold**", "**tie**"];
    assert!(
        orderings.iter().all(|r| verdicts.contains(&r[3].as_str())),
        "{orderings:?}"
    );
    assert_eq!(rows(section(&md, "## Time to quality")).len(), 2, "{md}");
    assert_eq!(
        rows(section(&md, "## Were the coders still improving?")).len(),
        2 * 4,
        "{md}"
    );
    for png in [
        "fvu_vs_ce_layers.png",
        "fvu_vs_tokens_layer1.png",
        "fvu_vs_tokens_layer3.png",
    ] {
        let bytes = std::fs::read(out.join("report").join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }

    // Rerunning resumes: everything is there, so only the report is written again.
    let again = std::process::Command::new(root().join("scripts/reproduce_paper.sh"))
        .args(["--scale", "smoke", "--out"])
        .arg(&out)
        .env("SPARSECODER", env!("CARGO_BIN_EXE_sparsecoder"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("trained"));

    // A folder that eval has not seen is refused, naming the file.
    let (ok, _, err) = sc(&[
        "report",
        tmp.path().to_str().unwrap(),
        "--out",
        "/tmp/unused",
    ]);
    assert!(!ok && err.contains("eval.json: cannot read"), "{err}");
}
