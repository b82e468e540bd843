//! apa (to be written).
