//! Demand: requests per second in each bucket of a grid.

use serde::{Deserialize, Serialize};

use crate::grid::Grid;

/// Request rate per bucket (req/s), flat in [`Grid::index`] order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    /// The buckets.
    pub grid: Grid,
    /// req/s per cell; same length as the grid.
    pub rates: Vec<f64>,
}

impl Demand {
    /// No demand on `grid`.
    pub fn zero(grid: Grid) -> Self {
        let n = grid.len();
        Self {
            grid,
            rates: vec![0.0; n],
        }
    }

    /// The demand of requests `(input, output)` spread over `duration_s` seconds.
    pub fn from_requests(
        grid: Grid,
        requests: impl IntoIterator<Item = (u32, u32)>,
        duration_s: f64,
    ) -> Self {
        let mut d = Self::zero(grid);
        let per = if duration_s > 0.0 {
            1.0 / duration_s
        } else {
            0.0
        };
        for (i, o) in requests {
            let c = d.grid.cell(i, o);
            let k = d.grid.index(c);
            d.rates[k] += per;
        }
        d
    }

    /// Total req/s.
    pub fn total(&self) -> f64 {
        self.rates.iter().sum()
    }

    /// The same mix at `total` req/s (unchanged if there is no demand).
    pub fn scaled_to(&self, total: f64) -> Self {
        let t = self.total();
        let f = if t > 0.0 { total / t } else { 0.0 };
        Self {
            grid: self.grid.clone(),
            rates: self.rates.iter().map(|r| r * f).collect(),
        }
    }
}
