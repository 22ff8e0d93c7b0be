//! One shard file: a fixed little-endian header with a section table, then five page-aligned sections.
//!
//! The layout is specified in `docs/cache-format.md`. [`ShardHeader::parse`] trusts nothing in the file: every
//! count, offset and length is checked against the format and the file size before any section is touched.

use crate::dtype::{DType, ElemType};
use crate::error::{CacheError, Result};
use crate::fsutil;
use memmap2::Mmap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

pub const MAGIC: [u8; 8] = *b"SCSHARD\0";
pub const VERSION: u32 = 1;
/// Sections start at multiples of this many bytes (a page), so each can be mapped and cast in place.
pub const ALIGN: u64 = 4096;
pub const SECTION_COUNT: usize = 5;
const FIXED_LEN: usize = 40;
const ENTRY_LEN: usize = 48;
const NAME_LEN: usize = 16;
/// Bytes of the header including its trailing checksum.
pub const HEADER_LEN: usize = FIXED_LEN + SECTION_COUNT * ENTRY_LEN + 8;

/// The five sections of a shard, in the order the writer lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    MlpIn,
    MlpOut,
    TokenIds,
    SeqIds,
    Positions,
}

impl Section {
    pub const ALL: [Section; SECTION_COUNT] = [
        Section::MlpIn,
        Section::MlpOut,
        Section::TokenIds,
        Section::SeqIds,
        Section::Positions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::MlpIn => "mlp_in",
            Section::MlpOut => "mlp_out",
            Section::TokenIds => "token_ids",
            Section::SeqIds => "seq_ids",
            Section::Positions => "positions",
        }
    }

    pub fn parse(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Elements per row and element type of this section in a shard of the given shape.
    pub fn shape(self, d_in: u32, d_out: u32, dtype: DType) -> (u64, ElemType) {
        match self {
            Section::MlpIn => (d_in as u64, dtype.elem()),
            Section::MlpOut => (d_out as u64, dtype.elem()),
            Section::TokenIds | Section::Positions => (1, ElemType::U32),
            Section::SeqIds => (1, ElemType::U64),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    pub elem: ElemType,
    pub offset: u64,
    pub len: u64,
    /// xxh3-64 (seed 0) of the section's bytes.
    pub checksum: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub rows: u64,
    pub d_in: u32,
    pub d_out: u32,
    pub dtype: DType,
    /// Indexed by `Section as usize`.
    pub sections: [SectionEntry; SECTION_COUNT],
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(ALIGN) * ALIGN
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

impl ShardHeader {
    /// The canonical layout for a shard of this shape; checksums are left zero.
    pub fn layout(rows: u64, d_in: u32, d_out: u32, dtype: DType) -> ShardHeader {
        let mut offset = align_up(HEADER_LEN as u64);
        let sections = Section::ALL.map(|s| {
            let (width, elem) = s.shape(d_in, d_out, dtype);
            let len = rows * elem.row_bytes(width).expect("a row's size fits u64");
            let entry = SectionEntry {
                elem,
                offset,
                len,
                checksum: 0,
            };
            offset = align_up(offset + len);
            entry
        });
        ShardHeader {
            rows,
            d_in,
            d_out,
            dtype,
            sections,
        }
    }

    pub fn section(&self, s: Section) -> &SectionEntry {
        &self.sections[s.index()]
    }

    /// Size of the file: the end of the last section.
    pub fn file_len(&self) -> u64 {
        self.sections
            .iter()
            .map(|e| e.offset + e.len)
            .max()
            .unwrap_or(0)
            .max(HEADER_LEN as u64)
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.rows.to_le_bytes());
        b[24..28].copy_from_slice(&self.d_in.to_le_bytes());
        b[28..32].copy_from_slice(&self.d_out.to_le_bytes());
        b[32..36].copy_from_slice(&self.dtype.elem().code().to_le_bytes());
        b[36..40].copy_from_slice(&(SECTION_COUNT as u32).to_le_bytes());
        for (i, (s, e)) in Section::ALL.iter().zip(&self.sections).enumerate() {
            let at = FIXED_LEN + i * ENTRY_LEN;
            b[at..at + s.name().len()].copy_from_slice(s.name().as_bytes());
            b[at + 16..at + 20].copy_from_slice(&e.elem.code().to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&e.offset.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&e.len.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&e.checksum.to_le_bytes());
        }
        let sum = xxh3_64(&b[..HEADER_LEN - 8]);
        b[HEADER_LEN - 8..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Parses and checks a header. `bytes` is at least the start of the file; `file_len` is its full size.
    // Long on purpose: one pass over the header's fields in file order, each check beside the field it reads,
    // as docs/cache-format.md lists them; the fuzz target `shard_header` drives exactly this function.
    pub fn parse(bytes: &[u8], file_len: u64, path: &Path) -> Result<ShardHeader> {
        let bad = |what: String| CacheError::corrupt(path, what);
        if bytes.len() < FIXED_LEN {
            return Err(bad(format!(
                "truncated shard: header needs at least {FIXED_LEN} bytes, file has {}",
                bytes.len()
            )));
        }
        if bytes[0..8] != MAGIC {
            return Err(bad(format!(
                "not a shard file: magic expected {:?}, found {:?}",
                String::from_utf8_lossy(&MAGIC),
                String::from_utf8_lossy(&bytes[0..8])
            )));
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(bad(format!(
                "unknown shard format version: expected {VERSION}, found {version}"
            )));
        }
        let header_len = u32_at(bytes, 12) as usize;
        let count = u32_at(bytes, 36) as usize;
        if count != SECTION_COUNT || header_len != HEADER_LEN {
            return Err(bad(format!(
                "header: section count expected {SECTION_COUNT} and header length {HEADER_LEN}, \
                 found {count} and {header_len}"
            )));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "truncated shard: header needs {HEADER_LEN} bytes, file has {}",
                bytes.len()
            )));
        }
        let stored = u64_at(bytes, HEADER_LEN - 8);
        let computed = xxh3_64(&bytes[..HEADER_LEN - 8]);
        if stored != computed {
            return Err(CacheError::Checksum {
                path: path.to_path_buf(),
                part: "header".into(),
                expected: stored,
                found: computed,
            });
        }
        let rows = u64_at(bytes, 16);
        let d_in = u32_at(bytes, 24);
        let d_out = u32_at(bytes, 28);
        let code = u32_at(bytes, 32);
        let dtype = ElemType::from_code(code)
            .and_then(ElemType::as_activation)
            .ok_or_else(|| {
                bad(format!(
                    "header: activation dtype code {code} is not 0 (f32), 1 (f16), 2 (bf16) or 5 (fp8)"
                ))
            })?;
        if d_in == 0 || d_out == 0 {
            return Err(bad(format!(
                "header: widths must be positive, found d_in={d_in} d_out={d_out}"
            )));
        }
        let mut found: [Option<SectionEntry>; SECTION_COUNT] = [None; SECTION_COUNT];
        for i in 0..SECTION_COUNT {
            let at = FIXED_LEN + i * ENTRY_LEN;
            let raw = &bytes[at..at + NAME_LEN];
            let end = raw.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
            if raw[end..].iter().any(|&c| c != 0) {
                return Err(bad(format!(
                    "header: section table entry {i}'s name is not zero-padded after its first zero byte"
                )));
            }
            let name = std::str::from_utf8(&raw[..end]).unwrap_or("");
            let section = Section::parse(name).ok_or_else(|| {
                bad(format!(
                    "header: section table entry {i} has unknown name {name:?}"
                ))
            })?;
            if found[section.index()].is_some() {
                return Err(bad(format!("header: section {name} appears twice")));
            }
            let (width, want_elem) = section.shape(d_in, d_out, dtype);
            let code = u32_at(bytes, at + 16);
            let elem = ElemType::from_code(code);
            if elem != Some(want_elem) {
                return Err(bad(format!(
                    "section {name}: element type expected {} (code {}), found code {code}",
                    want_elem.name(),
                    want_elem.code()
                )));
            }
            let offset = u64_at(bytes, at + 24);
            let len = u64_at(bytes, at + 32);
            let row_bytes = want_elem.row_bytes(width);
            let want_len = row_bytes.and_then(|b| rows.checked_mul(b)).ok_or_else(|| {
                bad(format!(
                    "header: {rows} rows overflow section {name}'s size"
                ))
            })?;
            if len != want_len {
                return Err(bad(format!(
                    "section {name}: length expected {want_len} bytes ({rows} rows × {} bytes), found {len}",
                    row_bytes.unwrap_or(0)
                )));
            }
            if !offset.is_multiple_of(ALIGN) || offset < HEADER_LEN as u64 {
                return Err(bad(format!(
                    "section {name}: offset {offset} is not a multiple of {ALIGN} past the header"
                )));
            }
            let end = offset
                .checked_add(len)
                .ok_or_else(|| bad(format!("section {name}: offset overflows")))?;
            if end > file_len {
                return Err(bad(format!(
                    "truncated shard: section {name} ends at byte {end}, file has {file_len} bytes"
                )));
            }
            found[section.index()] = Some(SectionEntry {
                elem: want_elem,
                offset,
                len,
                checksum: u64_at(bytes, at + 40),
            });
        }
        let sections = found.map(|e| e.expect("all five sections found once"));
        let mut spans: Vec<(u64, u64)> = sections
            .iter()
            .map(|e| (e.offset, e.offset + e.len))
            .collect();
        spans.sort();
        if spans.windows(2).any(|w| w[0].1 > w[1].0) {
            return Err(bad("header: sections overlap".into()));
        }
        Ok(ShardHeader {
            rows,
            d_in,
            d_out,
            dtype,
            sections,
        })
    }
}

/// The rows of one shard, as the writer hands them over. Activations are already encoded in `dtype`.
pub struct ShardContent<'a> {
    pub rows: u64,
    pub d_in: u32,
    pub d_out: u32,
    pub dtype: DType,
    pub mlp_in: &'a [u8],
    pub mlp_out: &'a [u8],
    pub token_ids: &'a [u32],
    pub seq_ids: &'a [u64],
    pub positions: &'a [u32],
}

impl ShardContent<'_> {
    fn section_bytes(&self, s: Section) -> &[u8] {
        match s {
            Section::MlpIn => self.mlp_in,
            Section::MlpOut => self.mlp_out,
            Section::TokenIds => bytemuck::cast_slice(self.token_ids),
            Section::SeqIds => bytemuck::cast_slice(self.seq_ids),
            Section::Positions => bytemuck::cast_slice(self.positions),
        }
    }
}

/// What the manifest records about a written shard file.
#[derive(Clone, Copy, Debug)]
pub struct WrittenFile {
    pub bytes: u64,
    /// xxh3-64 of the whole file.
    pub checksum: u64,
}

/// A `Write` that hashes and counts what passes through it.
pub(crate) struct HashingWriter<'a> {
    pub inner: &'a mut dyn Write,
    pub hasher: Xxh3,
    pub bytes: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a shard atomically (temp file, fsync, rename) and returns its size and whole-file checksum.
pub fn write_shard(path: &Path, content: &ShardContent) -> Result<WrittenFile> {
    let mut header = ShardHeader::layout(content.rows, content.d_in, content.d_out, content.dtype);
    for s in Section::ALL {
        let bytes = content.section_bytes(s);
        let entry = &mut header.sections[s.index()];
        if bytes.len() as u64 != entry.len {
            return Err(CacheError::mismatch(
                path,
                format!("{} byte length", s.name()),
                entry.len,
                bytes.len(),
            ));
        }
        entry.checksum = xxh3_64(bytes);
    }
    let mut info = WrittenFile {
        bytes: 0,
        checksum: 0,
    };
    fsutil::write_atomic(path, |out| {
        let mut w = HashingWriter {
            inner: out,
            hasher: Xxh3::new(),
            bytes: 0,
        };
        w.write_all(&header.encode())?;
        for s in Section::ALL {
            let entry = header.section(s);
            pad_to(&mut w, entry.offset)?;
            w.write_all(content.section_bytes(s))?;
        }
        info = WrittenFile {
            bytes: w.bytes,
            checksum: w.hasher.digest(),
        };
        Ok(())
    })?;
    Ok(info)
}

fn pad_to(w: &mut HashingWriter, offset: u64) -> std::io::Result<()> {
    const ZEROS: [u8; ALIGN as usize] = [0; ALIGN as usize];
    while w.bytes < offset {
        let n = (offset - w.bytes).min(ALIGN) as usize;
        w.write_all(&ZEROS[..n])?;
    }
    Ok(())
}

/// The bytes of an open shard: mapped for plain shards, decompressed into 8-byte-aligned memory for `.zst`.
enum ShardBytes {
    Mapped(Mmap),
    Owned { words: Vec<u64>, len: usize },
}

impl ShardBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            ShardBytes::Mapped(m) => m,
            ShardBytes::Owned { words, len } => &bytemuck::cast_slice(words)[..*len],
        }
    }
}

/// An open, header-checked shard with typed access to its sections.
pub struct Shard {
    path: PathBuf,
    bytes: ShardBytes,
    header: ShardHeader,
}

impl Shard {
    /// Opens a shard: memory-mapped, or decompressed in full when the name ends in `.zst`.
    pub fn open(path: &Path) -> Result<Shard> {
        let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
        let bytes = if path.extension().is_some_and(|e| e == "zst") {
            let mut raw = Vec::new();
            zstd::stream::read::Decoder::new(file)
                .and_then(|mut d| d.read_to_end(&mut raw))
                .map_err(|e| CacheError::corrupt(path, format!("zstd stream: {e}")))?;
            let mut words = vec![0u64; raw.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..raw.len()].copy_from_slice(&raw);
            ShardBytes::Owned {
                words,
                len: raw.len(),
            }
        } else {
            let len = file.metadata().map_err(|e| CacheError::io(path, e))?.len();
            if len == 0 {
                return Err(CacheError::corrupt(path, "truncated shard: file is empty"));
            }
            // SAFETY: shard files are immutable once renamed into place; the writer never modifies them.
            ShardBytes::Mapped(unsafe { Mmap::map(&file) }.map_err(|e| CacheError::io(path, e))?)
        };
        let data = bytes.as_slice();
        let header = ShardHeader::parse(data, data.len() as u64, path)?;
        Ok(Shard {
            path: path.to_path_buf(),
            bytes,
            header,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Asks the kernel to read a mapped shard ahead, so random row access does not stall on page faults.
    pub fn prefetch(&self) {
        if let ShardBytes::Mapped(m) = &self.bytes {
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }

    pub fn header(&self) -> &ShardHeader {
        &self.header
    }
    pub fn rows(&self) -> u64 {
        self.header.rows
    }
    pub fn d_in(&self) -> usize {
        self.header.d_in as usize
    }
    pub fn d_out(&self) -> usize {
        self.header.d_out as usize
    }
    pub fn dtype(&self) -> DType {
        self.header.dtype
    }

    pub fn section_bytes(&self, s: Section) -> &[u8] {
        let e = self.header.section(s);
        &self.bytes.as_slice()[e.offset as usize..(e.offset + e.len) as usize]
    }

    pub fn token_ids(&self) -> &[u32] {
        bytemuck::cast_slice(self.section_bytes(Section::TokenIds))
    }
    pub fn seq_ids(&self) -> &[u64] {
        bytemuck::cast_slice(self.section_bytes(Section::SeqIds))
    }
    pub fn positions(&self) -> &[u32] {
        bytemuck::cast_slice(self.section_bytes(Section::Positions))
    }

    /// Width of an activation section (`mlp_in` or `mlp_out`).
    pub fn width(&self, s: Section) -> usize {
        match s {
            Section::MlpIn => self.d_in(),
            Section::MlpOut => self.d_out(),
            _ => panic!("{} is not an activation section", s.name()),
        }
    }

    /// Converts `out.len() / width` consecutive rows of an activation section, starting at `first_row`, to f32.
    pub fn read_rows_f32(&self, s: Section, first_row: usize, out: &mut [f32]) {
        let width = self.width(s);
        let stride = self.dtype().row_bytes(width);
        let bytes = self.section_bytes(s);
        let start = first_row * stride;
        self.dtype().decode_rows(
            &bytes[start..start + out.len() / width * stride],
            width,
            out,
        );
    }

    /// Recomputes every section checksum: one error per damaged section, naming the shard and the section.
    pub fn damaged_sections(&self) -> Vec<CacheError> {
        Section::ALL
            .into_iter()
            .filter_map(|s| {
                let expected = self.header.section(s).checksum;
                let found = xxh3_64(self.section_bytes(s));
                (expected != found).then(|| CacheError::Checksum {
                    path: self.path.clone(),
                    part: format!("section {}", s.name()),
                    expected,
                    found,
                })
            })
            .collect()
    }

    /// The first damaged section as an error, if any.
    pub fn verify_sections(&self) -> Result<()> {
        match self.damaged_sections().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Checksum of the whole stored file (for a `.zst` shard: of the compressed file, as the manifest records).
    pub fn file_checksum(path: &Path) -> Result<(u64, u64)> {
        let mut file = File::open(path).map_err(|e| CacheError::io(path, e))?;
        let mut hasher = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(|e| CacheError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        Ok((total, hasher.digest()))
    }
}
