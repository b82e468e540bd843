//! hpa (to be written).
