//! The advice of `huge_pages` takes effect: on a Linux kernel whose transparent huge pages are enabled
//! (`always` or `madvise`), a large tensor from `huge_pages::zeros`, once written, lies on huge pages.
use trainer::huge_pages;

/// The kB of huge pages backing the mapping that holds `addr`, from /proc/self/smaps.
fn anon_huge_kb(addr: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = a <= addr && addr < b;
                continue;
            }
        }
        if inside {
            if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn large_tensors_lie_on_huge_pages() {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if !(mode.contains("[always]") || mode.contains("[madvise]")) {
        eprintln!(
            "skipped: transparent huge pages are off here ({})",
            mode.trim()
        );
        return;
    }
    let mut w: Vec<f32> = huge_pages::zeros(16 << 20);
    w.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
    let kb = anon_huge_kb(w.as_ptr() as usize + w.len() * 2)
        .expect("the tensor's mapping in /proc/self/smaps");
    // 64 MiB of f32: at least 30 of its 2 MiB pages should be huge (the kernel may lack free huge pages for some).
    assert!(
        kb >= 30 * 2048,
        "only {kb} kB of the tensor's mapping are on huge pages"
    );
    assert_eq!(w[12345], 12345.0);
}
