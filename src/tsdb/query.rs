//! The read side: [`Queryable`] over one history, the head's memory and the block files.
//!
//! For each series, memory holds a suffix of its history (from [`SeriesData::mem_mint`] on);
//! everything older is read from the block files that overlap the query, chunk by chunk, each
//! checked against its checksum. Chunks read or decoded once are shared through the bounded
//! cache of decoded samples (`decoded.rs`), memory and files alike.
//!
//! A reader holds a series' lock only to copy what memory holds of the range (and the time from
//! which memory holds it); block files are listed after that, so a chunk the head drops from
//! memory after it was written to a file is always found in one or the other.

use std::sync::{Arc, Mutex, MutexGuard};

use super::block::Block;
use super::decoded::{DecodedCache, Key};
use super::series::{MemSeries, SeriesData};
use super::xor::XorAppender;
use super::{chunk::Chunk, Counters, Db, Queryable, Sample, Series};
use crate::labels::{Labels, Matcher};

enum Part {
    Decoded(Arc<[Sample]>),
    Chunk(Chunk, Key),
    Head(XorAppender, Key),
}

/// What memory holds of one series for a range, copied under its lock.
struct MemRead {
    parts: Vec<Part>,
    /// Samples before this time come from the block files.
    mem_mint: i64,
}

fn lock_cache(c: &Mutex<DecodedCache>) -> MutexGuard<'_, DecodedCache> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

fn overlaps(lo: i64, hi: i64, mint: i64, maxt: i64) -> bool {
    hi >= mint && lo <= maxt
}

/// Appends the samples of `all` (time-ordered) that lie in `[mint, maxt]`.
fn take(out: &mut Vec<Sample>, all: &[Sample], mint: i64, maxt: i64) {
    let lo = all.partition_point(|s| s.t < mint);
    let hi = all.partition_point(|s| s.t <= maxt);
    if lo < hi {
        out.extend_from_slice(&all[lo..hi]);
    }
}

impl Db {
    fn copy_memory(&self, s: &MemSeries, mint: i64, maxt: i64) -> MemRead {
        let d = s.lock();
        let mut c = lock_cache(&self.decoded);
        let mut parts: Vec<Part> = Vec::new();
        for ch in d
            .chunks
            .iter()
            .filter(|ch| overlaps(ch.mint, ch.maxt, mint, maxt))
        {
            let key = Key::Mem(s.sref, ch.mint, ch.count());
            parts.push(match c.get(&key) {
                Some(x) => Part::Decoded(x),
                None => Part::Chunk(ch.clone(), key),
            });
        }
        if let (Some(lo), Some(hi)) = (d.head.first_t(), d.head.last_t()) {
            if overlaps(lo, hi, mint, maxt) {
                let key = Key::Mem(s.sref, lo, d.head.len());
                parts.push(match c.get(&key) {
                    Some(x) => Part::Decoded(x),
                    None => Part::Head(d.head.clone(), key),
                });
            }
        }
        MemRead {
            parts,
            mem_mint: d.mem_mint(),
        }
    }

    /// Decoded samples of a file chunk, from the cache or read, checked and decoded now.
    /// `None` when the chunk is damaged (logged once, counted, skipped).
    fn file_chunk(
        &self,
        b: &Block,
        s: &MemSeries,
        c: &super::block::ChunkMeta,
    ) -> Option<Arc<[Sample]>> {
        let key = Key::File(b.seq, c.off);
        if let Some(x) = lock_cache(&self.decoded).get(&key) {
            return Some(x);
        }
        let decoded = b
            .read_chunk(c)
            .map_err(|d| d.reason)
            .and_then(|ch| ch.samples().map_err(|e| e.to_string()));
        match decoded {
            Ok(v) => {
                let v: Arc<[Sample]> = v.into();
                lock_cache(&self.decoded).insert(key, v.clone());
                Some(v)
            }
            Err(reason) => {
                if b.note_damage(c.off) {
                    Counters::add(&self.counters.chunks_unreadable, 1);
                    tracing::warn!(
                        file = %b.path.display(),
                        offset = c.off,
                        series = %s.labels,
                        mint = c.mint,
                        maxt = c.maxt,
                        reason = %reason,
                        "damaged chunk in a tsdb block skipped; the rest of the block is read"
                    );
                }
                None
            }
        }
    }

    /// Samples of `s` in `[mint, maxt]` from the block files (`blocks` sorted by time).
    fn read_files(
        &self,
        s: &MemSeries,
        blocks: &[Arc<Block>],
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) {
        if mint > maxt {
            return;
        }
        let mut metas: Vec<(&Block, &super::block::ChunkMeta)> = blocks
            .iter()
            .filter(|b| overlaps(b.meta.mint, b.meta.maxt, mint, maxt))
            .flat_map(|b| {
                b.chunks_of(s.sref)
                    .iter()
                    .filter(|c| overlaps(c.mint, c.maxt, mint, maxt))
                    .map(move |c| (b.as_ref(), c))
            })
            .collect();
        // A series' chunks never overlap in time, whichever files they are in.
        metas.sort_by_key(|(_, c)| c.mint);
        for (b, c) in metas {
            if let Some(v) = self.file_chunk(b, s, c) {
                take(out, &v, mint, maxt);
            }
        }
    }

    fn decode_memory(
        &self,
        parts: Vec<Part>,
        mint: i64,
        maxt: i64,
        s: &MemSeries,
        out: &mut Vec<Sample>,
    ) {
        for p in parts {
            let (decoded, key): (Arc<[Sample]>, Key) = match p {
                Part::Decoded(v) => {
                    take(out, &v, mint, maxt);
                    continue;
                }
                Part::Chunk(c, key) => match c.samples() {
                    Ok(v) => (v.into(), key),
                    Err(e) => {
                        tracing::warn!(series = %s.labels, mint = c.mint, error = %e, "undecodable chunk skipped");
                        continue;
                    }
                },
                Part::Head(h, key) => (h.samples().into(), key),
            };
            take(out, &decoded, mint, maxt);
            if !decoded.is_empty() {
                lock_cache(&self.decoded).insert(key, decoded);
            }
        }
    }

    /// Loaded blocks overlapping `[mint, maxt]`, oldest first.
    pub(super) fn blocks_in(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.blocks_read()
            .iter()
            .filter(|b| overlaps(b.meta.mint, b.meta.maxt, mint, maxt))
            .cloned()
            .collect()
    }

    /// Every sample of the given series in `[mint, maxt]`: memory first copied for all of them,
    /// then the block files read for what memory does not hold.
    fn read_series(&self, series: &[Arc<MemSeries>], mint: i64, maxt: i64) -> Vec<Vec<Sample>> {
        let mems: Vec<MemRead> = series
            .iter()
            .map(|s| self.copy_memory(s, mint, maxt))
            .collect();
        let needs_files = mems.iter().any(|m| m.mem_mint > mint);
        let blocks = if needs_files {
            self.blocks_in(mint, maxt)
        } else {
            Vec::new()
        };
        series
            .iter()
            .zip(mems)
            .map(|(s, m)| {
                let mut out = Vec::new();
                if !blocks.is_empty() {
                    let hi = maxt.min(m.mem_mint.saturating_sub(1));
                    self.read_files(s, &blocks, mint, hi, &mut out);
                }
                self.decode_memory(m.parts, mint, maxt, s, &mut out);
                out
            })
            .collect()
    }

    /// Whether `s` has any sample in `[mint, maxt]`, decoding only when bounds cannot tell.
    pub(super) fn has_sample_in(
        &self,
        s: &MemSeries,
        blocks: &[Arc<Block>],
        mint: i64,
        maxt: i64,
    ) -> bool {
        let mem_mint = {
            let d = s.lock();
            if memory_has_sample_in(&d, mint, maxt) {
                return true;
            }
            d.mem_mint()
        };
        let hi = maxt.min(mem_mint.saturating_sub(1));
        if mint > hi {
            return false;
        }
        for b in blocks
            .iter()
            .filter(|b| overlaps(b.meta.mint, b.meta.maxt, mint, hi))
        {
            for c in b
                .chunks_of(s.sref)
                .iter()
                .filter(|c| overlaps(c.mint, c.maxt, mint, hi))
            {
                if c.mint >= mint && c.mint <= hi || c.maxt >= mint && c.maxt <= hi {
                    return true;
                }
                if self
                    .file_chunk(b, s, c)
                    .is_some_and(|v| v.iter().any(|x| x.t >= mint && x.t <= hi))
                {
                    return true;
                }
            }
        }
        false
    }

    /// Series handles passing any of the matcher sets (all when empty), sorted by ref.
    fn selected(&self, matcher_sets: &[Vec<Matcher>]) -> Vec<Arc<MemSeries>> {
        let h = self.head_read();
        if matcher_sets.is_empty() {
            return h.all();
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for ms in matcher_sets {
            for s in h.select(ms) {
                if seen.insert(s.sref) {
                    out.push(s);
                }
            }
        }
        out
    }

    fn with_samples_in(
        &self,
        series: Vec<Arc<MemSeries>>,
        mint: i64,
        maxt: i64,
    ) -> Vec<Arc<MemSeries>> {
        let blocks = self.blocks_in(mint, maxt);
        series
            .into_iter()
            .filter(|s| self.has_sample_in(s, &blocks, mint, maxt))
            .collect()
    }
}

fn memory_has_sample_in(d: &SeriesData, mint: i64, maxt: i64) -> bool {
    if let (Some(lo), Some(hi)) = (d.head.first_t(), d.head.last_t()) {
        if overlaps(lo, hi, mint, maxt)
            && (lo >= mint
                || hi <= maxt
                || d.head.samples().iter().any(|s| s.t >= mint && s.t <= maxt))
        {
            return true;
        }
    }
    d.chunks
        .iter()
        .filter(|c| overlaps(c.mint, c.maxt, mint, maxt))
        .any(|c| {
            // An end inside the range is a sample inside it; a chunk straddling the whole
            // range must be decoded to tell.
            c.mint >= mint
                || c.maxt <= maxt
                || c.samples()
                    .is_ok_and(|s| s.iter().any(|s| s.t >= mint && s.t <= maxt))
        })
}

impl Queryable for Db {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let candidates = self.head_read().select(matchers);
        let samples = self.read_series(&candidates, mint, maxt);
        let mut out: Vec<Series> = candidates
            .iter()
            .zip(samples)
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, samples)| Series {
                labels: s.labels.clone(),
                samples,
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        each: &mut dyn FnMut(Series) -> bool,
    ) {
        let candidates = self.head_read().select(matchers);
        // One series read at a time, so a caller that stops early never holds the rest.
        for s in candidates.chunks(1) {
            let samples = self.read_series(s, mint, maxt).pop().unwrap_or_default();
            if !samples.is_empty()
                && !each(Series {
                    labels: s[0].labels.clone(),
                    samples,
                })
            {
                return;
            }
        }
    }

    fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let candidates = self.head_read().select(matchers);
        let mut out: Vec<Labels> = self
            .with_samples_in(candidates, mint, maxt)
            .iter()
            .map(|s| s.labels.clone())
            .collect();
        out.sort();
        out
    }

    fn label_names(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .with_samples_in(self.selected(matcher_sets), mint, maxt)
            .iter()
            .flat_map(|s| s.labels.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let with_label: Vec<Arc<MemSeries>> = self
            .selected(matcher_sets)
            .into_iter()
            .filter(|s| s.labels.get(name).is_some())
            .collect();
        let mut vals: Vec<String> = self
            .with_samples_in(with_label, mint, maxt)
            .iter()
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        vals.sort();
        vals.dedup();
        vals
    }
}
