//! Why a plan is what it is, in words: how it was found, what each option carries, which
//! constraints bind, which request shapes only one option can serve.

use crate::bnb::{Found, ceil_count};
use crate::lp::{Assignment, Model};
use crate::plan::Method;
use crate::solve::Problem;

/// How the plan was found, with its distance to the lower bound.
pub(crate) fn method(method: Method, f: &Found, cost: f64, lower: f64) -> String {
    let gap = if lower > 0.0 {
        format!(
            "{:.1} % above the fractional optimum ${lower:.2}/h",
            (cost / lower - 1.0).max(0.0) * 100.0
        )
    } else {
        format!("the fractional optimum is ${lower:.2}/h")
    };
    let stopped = f.stopped.as_deref().unwrap_or("the search stopped");
    match method {
        Method::Optimal => format!(
            "optimal: branch and bound closed after {} node(s); ${cost:.2}/h is {gap}",
            f.nodes
        ),
        Method::BestFound => format!(
            "best found: {stopped} after {} node(s); ${cost:.2}/h is {gap} (no better plan is proven not to exist)",
            f.nodes
        ),
        Method::Relaxation => format!(
            "fallback: {stopped} after {} node(s) before improving on the relaxation rounded up; ${cost:.2}/h is {gap}",
            f.nodes
        ),
        Method::Kept => format!("kept: ${cost:.2}/h, {gap}"),
    }
}

/// What each option carries and which constraints bind.
pub(crate) fn plan(p: &Problem, m: &Model, y: &[u32], asg: &Assignment) -> Vec<String> {
    let mut out = Vec::new();
    for (g, o) in p.gpus.iter().enumerate() {
        let (n, load) = (y[g], asg.load[g]);
        if n > 0 {
            out.push(format!(
                "{}: {n} replica{} carry {load:.2} replicas' load ({:.0} % busy)",
                o.name,
                if n == 1 { "" } else { "s" },
                load / f64::from(n) * 100.0
            ));
        }
        if n > 0 && o.max_replicas == Some(n) {
            out.push(format!("{} capped at {n}", o.name));
        }
        if n > 0 && n == o.min_replicas && ceil_count(load / m.util) < n {
            out.push(format!(
                "{} held at its minimum of {n} (its load alone needs {})",
                o.name,
                ceil_count(load / m.util)
            ));
        }
    }
    out.extend(single_fits(p, m));
    if let Some(b) = m.budget {
        let c = m.cost_of(y);
        if c >= 0.999 * b {
            out.push(format!("budget binds: ${c:.2}/h of ${b:.2}/h"));
        }
    }
    out
}

/// Shapes with demand that only one option can serve within the SLO.
fn single_fits(p: &Problem, m: &Model) -> Vec<String> {
    let grid = &p.demand.grid;
    let mut out = Vec::new();
    for (g, o) in p.gpus.iter().enumerate() {
        let only: Vec<usize> = (0..m.buckets.len())
            .filter(|&k| {
                m.cap[g][k] > 0.0
                    && (0..m.options()).all(|h| h == g || m.cap[h][k] <= 0.0 || m.hi[h] == Some(0))
            })
            .collect();
        if only.is_empty() || m.options() == 1 {
            continue;
        }
        let rate: f64 = only.iter().map(|&k| m.buckets[k].1).sum();
        let cells: Vec<_> = only.iter().map(|&k| grid.cell_at(m.buckets[k].0)).collect();
        let min_in = cells.iter().map(|c| grid.inputs[c.inp]).min().unwrap_or(0);
        let min_out = cells.iter().map(|c| grid.outputs[c.out]).min().unwrap_or(0);
        out.push(format!(
            "{} bucket(s) with {rate:.2} req/s (prompts from {min_in} tokens, outputs from {min_out}) only fit {} within the SLO",
            only.len(),
            o.name
        ));
    }
    out
}
