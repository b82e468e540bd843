//! The report as a text table for people: one row per GPU (and one for the node), the
//! verdict, and each finding on its own line under it.

use std::fmt::Write as _;

use crate::{Finding, Report, Severity};

fn verdict(healthy: bool) -> &'static str {
    if healthy { "ok" } else { "FAIL" }
}

fn finding_lines(out: &mut String, findings: &[Finding]) {
    for f in findings {
        let sev = match f.severity {
            Severity::Fail => "fail",
            Severity::Warn => "warn",
        };
        let check = f.check.as_str();
        let _ = writeln!(out, "      {sev} {check}: {}", f.message);
    }
}

pub(crate) fn render(r: &Report) -> String {
    let mut out = String::new();
    let node_ok = !r.node.iter().any(|f| f.severity == Severity::Fail);
    let _ = writeln!(
        out,
        "node  {:<4}  driver {}  cards {}",
        verdict(node_ok),
        r.driver_version.as_deref().unwrap_or("?"),
        r.card_count
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
    );
    finding_lines(&mut out, &r.node);
    let rows: Vec<[String; 6]> = r
        .gpus
        .iter()
        .map(|g| {
            [
                g.index.to_string(),
                verdict(g.healthy).to_owned(),
                g.name.clone().unwrap_or_else(|| "?".to_owned()),
                g.arch.clone().unwrap_or_else(|| "?".to_owned()),
                g.pci_bus_id.clone().unwrap_or_else(|| "?".to_owned()),
                g.uuid.clone().unwrap_or_else(|| "?".to_owned()),
            ]
        })
        .collect();
    let header = ["GPU", "VERDICT", "NAME", "ARCH", "PCI", "UUID"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    if !rows.is_empty() {
        let line = |cells: &[&str]| {
            cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let _ = writeln!(out, "{}", line(&header));
        for (row, gpu) in rows.iter().zip(&r.gpus) {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            let _ = writeln!(out, "{}", line(&cells));
            finding_lines(&mut out, &gpu.findings);
            if !gpu.not_applicable.is_empty() {
                let na: Vec<String> = gpu
                    .not_applicable
                    .iter()
                    .map(|c| c.as_str().to_owned())
                    .collect();
                let _ = writeln!(out, "      n/a  {}", na.join(", "));
            }
        }
    }
    let _ = writeln!(
        out,
        "verdict: {}",
        if r.healthy { "healthy" } else { "UNHEALTHY" }
    );
    out
}
