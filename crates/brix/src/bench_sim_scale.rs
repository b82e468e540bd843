//! `brix bench sim --autoscaler FILE`: the PodAutoscaler documents of FILE as policies for the
//! simulated model, and the fleet files of a run (`timeline.csv`; for an autoscaled run also
//! `decisions.jsonl` and `timeline.png`).

use std::path::Path;

use brix_api::{PodAutoscaler, Resource};
use brix_autoscaler::{Policy, ReplicaProfile};
use brix_bench::vsim::{self, ScaleConfig, SimConfig, SimRun};
use serde::Deserialize;

use super::{SimCliError, write};

/// Every PodAutoscaler in `text` (a YAML list of documents, or `---`-separated documents, or
/// both), each checked on its own against its own target (any `scaleTargetRef.name` names the
/// simulated model), names unique: each is one run.
pub(super) fn parse(text: &str) -> Result<Vec<PodAutoscaler>, String> {
    let mut resources = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| e.to_string())?;
        match value {
            serde_yaml_ng::Value::Null => {}
            serde_yaml_ng::Value::Sequence(_) => resources.extend(
                serde_yaml_ng::from_value::<Vec<Resource>>(value).map_err(|e| e.to_string())?,
            ),
            other => resources
                .push(serde_yaml_ng::from_value::<Resource>(other).map_err(|e| e.to_string())?),
        }
    }
    let mut out: Vec<PodAutoscaler> = Vec::new();
    for (i, r) in resources.into_iter().enumerate() {
        let Resource::PodAutoscaler(p) = &r else {
            return Err(format!(
                "document {i}: kind {} is not a PodAutoscaler",
                r.kind()
            ));
        };
        let target = p.spec.scale_target_ref.name.clone();
        brix_api::validate_resources(std::slice::from_ref(&r), &[target.as_str()])
            .map_err(|e| format!("document {i}: {e}"))?;
        if out.iter().any(|o| o.metadata.name == p.metadata.name) {
            return Err(format!(
                "document {i}: metadata.name '{}' names another document's run too",
                p.metadata.name
            ));
        }
        out.push(p.clone());
    }
    if out.is_empty() {
        return Err("no PodAutoscaler document".into());
    }
    Ok(out)
}

/// The autoscalers of `path` for the fleet `cfg`: engines start in `startup_s`.
pub(super) fn load(
    path: &Path,
    cfg: &SimConfig,
    startup_s: f64,
) -> Result<Vec<ScaleConfig>, SimCliError> {
    let bad = |why: String| SimCliError::Flag(format!("--autoscaler {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let profile = ReplicaProfile::from_engine(&cfg.model, &cfg.gpu, &cfg.engine, startup_s)
        .map_err(vsim::SimError::from)?;
    parse(&text)
        .map_err(bad)?
        .iter()
        .map(|doc| {
            let policy = Policy::from_document(doc, Some(profile.clone()))
                .map_err(|e| bad(format!("{}: {e}", doc.metadata.name)))?;
            Ok(ScaleConfig::new(policy, startup_s))
        })
        .collect()
}

/// `timeline.csv` for every run; `decisions.jsonl` and `timeline.png` for an autoscaled one.
pub(super) fn write_fleet(
    dir: &Path,
    run: &SimRun,
    autoscaled: Option<&str>,
) -> Result<(), SimCliError> {
    write(&dir.join("timeline.csv"), &vsim::timeline_csv(run))?;
    let Some(name) = autoscaled else {
        return Ok(());
    };
    let path = dir.join("decisions.jsonl");
    let lines = vsim::decisions_jsonl(&run.decisions).map_err(|e| SimCliError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write(&path, &lines)?;
    let path = dir.join("timeline.png");
    vsim::timeline_png(&path, run, &format!("{name}: demand, replicas, TTFT")).map_err(|e| {
        SimCliError::Io {
            path,
            source: std::io::Error::other(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    const DOC: &str = "apiVersion: autoscaling.aibrix.ai/v1alpha1
kind: PodAutoscaler
metadata:
  name: NAME
spec:
  scalingStrategy: KPA
  minReplicas: 1
  maxReplicas: 4
  metricsSources:
    - metricSourceType: pod
      protocolType: http
      port: \"8000\"
      path: metrics
      targetMetric: num_requests_running
      targetValue: \"8\"
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: any-model
";

    #[test]
    fn documents_come_as_a_list_or_separated_and_each_is_checked() {
        let two = format!(
            "{}---\n{}",
            DOC.replace("NAME", "a"),
            DOC.replace("NAME", "b")
        );
        let names = |t: &str| parse(t).map(|v| v.into_iter().map(|p| p.metadata.name).collect());
        assert_eq!(names(&two), Ok(vec!["a".to_string(), "b".to_string()]));
        let list: String = ["c", "d"]
            .iter()
            .map(|n| {
                let doc = DOC.replace("NAME", n);
                let mut lines = doc.lines();
                let first = lines.next().unwrap_or_default();
                let rest: Vec<String> = lines.map(|l| format!("  {l}")).collect();
                format!("- {first}\n{}\n", rest.join("\n"))
            })
            .collect();
        assert_eq!(names(&list), Ok(vec!["c".to_string(), "d".to_string()]));
        let dup = format!(
            "{}---\n{}",
            DOC.replace("NAME", "a"),
            DOC.replace("NAME", "a")
        );
        assert!(names(&dup).is_err_and(|e| e.contains("another document")));
        let bad = DOC
            .replace("NAME", "a")
            .replace("maxReplicas: 4", "maxReplicas: 0");
        assert!(
            names(&bad).is_err_and(|e| e.contains("document 0")),
            "validated"
        );
        assert!(names("").is_err());
    }
}
