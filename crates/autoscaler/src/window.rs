//! Metric windows (to be written).
