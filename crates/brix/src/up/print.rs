//! `brix status`'s tables after the replicas: autoscalers and the optimizer's plans.

use brix_platform::autoscale::AutoscalerStatus;
use brix_platform::optimizer::OptimizerStatus;

/// The autoscalers' table, then each one's last decisions (newest last).
pub(super) fn print_autoscalers(all: &[AutoscalerStatus]) {
    if all.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<20} {:<16} {:<8} {:<28} {:>9} {:>9} {:>6} {:>6}",
        "AUTOSCALER", "MODEL", "STRATEGY", "TARGET", "CUR/DES", "READY/ST", "HELD", "EVENTS"
    );
    for a in all {
        println!(
            "{:<20} {:<16} {:<8} {:<28} {:>9} {:>9} {:>6} {:>6}",
            a.name,
            a.model,
            if a.panic {
                format!("{} !", a.strategy)
            } else {
                a.strategy.clone()
            },
            a.targets.join(","),
            format!("{}/{}", a.current, a.desired),
            format!("{}/{}", a.ready, a.starting),
            a.held,
            a.scale_events,
        );
    }
    for a in all {
        println!();
        println!(
            "{} (min {}, max {}, every {} s):",
            a.name, a.min_replicas, a.max_replicas, a.sync_s
        );
        if let Some(e) = &a.last_error {
            println!("  last error: {e}");
        }
        for d in a.decisions.iter().rev().take(5).rev() {
            println!("  {:>9.1}s  {}", d.at_s, d.reason);
        }
    }
}

/// The optimizer's plans: per deployment its GPU, target, how it is applied and its cost.
pub(super) fn print_optimizers(all: &[OptimizerStatus]) {
    for o in all {
        println!();
        let cost = o
            .plan
            .as_ref()
            .map_or("-".to_string(), |p| format!("${:.2}/h", p.cost_per_hour));
        println!(
            "OPTIMIZER {} ({} plans, {} failed, {cost}): {}",
            o.model, o.plans, o.failures, o.reason
        );
        println!(
            "  {:<24} {:<12} {:>7} {:>10}  APPLIED BY",
            "DEPLOYMENT", "GPU", "TARGET", "$/H EACH"
        );
        for d in &o.deployments {
            println!(
                "  {:<24} {:<12} {:>7} {:>10.2}  {}",
                d.name,
                d.gpu,
                d.target.map_or("-".to_string(), |t| t.to_string()),
                d.cost_per_replica,
                if d.autoscaled {
                    "autoscaler (external metric)"
                } else {
                    "optimizer (direct)"
                }
            );
        }
        if let Some(e) = &o.last_error {
            println!("  last error: {e}");
        }
    }
}
