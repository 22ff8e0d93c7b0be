//! The arithmetic of parts: parsing `--part`, reading the job array's variables, the shares and their
//! inverse, against brute force.
use cache_format::parts::{locate_shard, Part};
use std::collections::HashMap;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn parses_i_of_n_and_refuses_what_is_not_a_part() {
    assert_eq!(Part::parse("2/5"), Ok(Part { index: 2, count: 5 }));
    assert_eq!(Part::parse(" 0 / 1 "), Ok(Part { index: 0, count: 1 }));
    for (text, says) in [
        ("3/3", "numbered 0 to 2"),
        ("0/0", "at least 1"),
        ("1", "expected I/N"),
        ("-1/2", "whole numbers"),
        ("a/b", "whole numbers"),
        ("1/99999999999", "too many"),
    ] {
        let e = Part::parse(text).unwrap_err();
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn reads_slurm_and_kubernetes_arrays() {
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
        ("SLURM_ARRAY_TASK_MIN", "3"),
        ("SLURM_ARRAY_TASK_MAX", "6"),
    ];
    assert_eq!(
        Part::from_env(None, env(&slurm)),
        Ok(Part { index: 2, count: 4 })
    );
    assert_eq!(
        Part::from_env(Some(4), env(&slurm)),
        Ok(Part { index: 2, count: 4 })
    );
    assert!(Part::from_env(Some(3), env(&slurm))
        .unwrap_err()
        .contains("disagrees"));
    let k8s = [("JOB_COMPLETION_INDEX", "7")];
    assert_eq!(
        Part::from_env(Some(8), env(&k8s)),
        Ok(Part { index: 7, count: 8 })
    );
    assert!(Part::from_env(Some(7), env(&k8s))
        .unwrap_err()
        .contains("numbered 0 to 6"));
    assert!(Part::from_env(None, env(&k8s))
        .unwrap_err()
        .contains("--parts N"));
    assert!(Part::from_env(
        None,
        env(&[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "2")
        ])
    )
    .unwrap_err()
    .contains("SLURM_ARRAY_TASK_ID=\"x\" is not a whole number"));
    assert!(Part::from_env(
        None,
        env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2")
        ])
    )
    .unwrap_err()
    .contains("below"));
    assert!(Part::from_env(None, env(&[]))
        .unwrap_err()
        .contains("neither"));
}

#[test]
fn folder_names_round_trip_and_only_canonical_ones_are_parts() {
    let p = Part {
        index: 12,
        count: 40,
    };
    assert_eq!(p.dir_name(), "part-12-of-40");
    assert_eq!(Part::from_dir_name("part-12-of-40"), Some(p));
    for name in [
        "part-012-of-40",
        "part-3-of-3",
        "part-1-of-",
        "part--1-of-2",
        "parts-0-of-2",
        "part-0-of-2.tmp",
    ] {
        assert_eq!(Part::from_dir_name(name), None, "{name}");
    }
}

#[test]
fn shares_tile_the_items_and_locate_inverts_them() {
    for items in [0u64, 1, 2, 7, 20, 101] {
        for count in 1..=12u32 {
            let mut next = 0;
            for index in 0..count {
                let share = Part { index, count }.share(items);
                assert_eq!(
                    share.start, next,
                    "{items} items, part {index}/{count}: contiguous"
                );
                // Balanced: no share is more than one item larger than another.
                assert!(share.end - share.start <= items.div_ceil(count as u64));
                for shard in share.clone() {
                    assert_eq!(
                        locate_shard(shard, items, count),
                        (Part { index, count }, shard - share.start)
                    );
                }
                next = share.end;
            }
            assert_eq!(next, items);
        }
    }
}

#[test]
fn more_parts_than_shards_is_refused() {
    let p = Part { index: 0, count: 5 };
    assert!(p
        .shards(4096, 1024)
        .unwrap_err()
        .contains("use at most 4 parts"));
    assert_eq!(Part { index: 4, count: 5 }.shards(4096, 1024), Ok(3..4));
}
