//! Kubernetes HPA stabilization and rate policies (helper-owned; see tests).
