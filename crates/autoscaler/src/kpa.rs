//! kpa (to be written).
