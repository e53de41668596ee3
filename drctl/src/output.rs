//! Printing results as a table, JSON or YAML (`-o`). Everything drctl prints on standard
//! output goes through [`write`], so no command panics when the reader goes away.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::Output;

/// Prints `value` as JSON or YAML, or calls `table` for people.
pub fn print<T: Serialize>(format: Output, value: &T, table: impl FnOnce(&T) -> String) -> Result<()> {
    let text = match format {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Output::Yaml => serde_yaml::to_string(value)?,
        Output::Table => table(value),
    };
    write(text.as_bytes())
}

/// Writes `bytes` to standard output and flushes. A reader that stopped early (`| head`:
/// EPIPE) is not an error, the output is simply no longer wanted; any other failure (a full
/// disk: ENOSPC) is, naming standard output.
pub fn write(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("write to standard output"),
        _ => Ok(()),
    }
}

/// Aligns rows under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("   ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
