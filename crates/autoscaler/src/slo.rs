//! slo (to be written).
