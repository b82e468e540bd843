//! Request buckets: log2 ticks of input and output tokens, as AIBrix's profiles index them.

use brix_router::nearest_log2_tick as nearest;
use serde::{Deserialize, Serialize};

/// The bucket grid: a request of `i` input and `o` output tokens belongs to the cell whose
/// ticks are nearest in log2 space (clamped to the ends). AIBrix's profile `indexes` are
/// `[outputs, inputs]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    /// Input-token ticks, strictly increasing, ≥ 1.
    pub inputs: Vec<u32>,
    /// Output-token ticks, strictly increasing, ≥ 1.
    pub outputs: Vec<u32>,
}

/// One bucket: indexes into [`Grid::outputs`] and [`Grid::inputs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    /// Output tick index (a profile's row).
    pub out: usize,
    /// Input tick index (a profile's column).
    pub inp: usize,
}

impl Default for Grid {
    /// 10 × 10 = 100 buckets: inputs 32 … 16,384, outputs 4 … 2,048 (powers of two), wide
    /// enough for chat, code and long-context traces.
    fn default() -> Self {
        Self {
            inputs: (5..=14).map(|e| 1 << e).collect(),
            outputs: (2..=11).map(|e| 1 << e).collect(),
        }
    }
}

impl Grid {
    /// Powers of two from `2^in_lo` to `2^in_hi` inputs and `2^out_lo` to `2^out_hi` outputs.
    pub fn log2(in_lo: u32, in_hi: u32, out_lo: u32, out_hi: u32) -> Self {
        Self {
            inputs: (in_lo..=in_hi).map(|e| 1 << e).collect(),
            outputs: (out_lo..=out_hi).map(|e| 1 << e).collect(),
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.inputs.len() * self.outputs.len()
    }

    /// True for a grid without cells.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flat index of `c` (row-major by output, as AIBrix's `tputs[out][in]`).
    pub fn index(&self, c: Cell) -> usize {
        c.out * self.inputs.len() + c.inp
    }

    /// The cell of flat index `i`.
    pub fn cell_at(&self, i: usize) -> Cell {
        Cell {
            out: i / self.inputs.len(),
            inp: i % self.inputs.len(),
        }
    }

    /// The bucket of a request of `input` and `output` tokens.
    pub fn cell(&self, input: u32, output: u32) -> Cell {
        Cell {
            out: nearest(&self.outputs, output),
            inp: nearest(&self.inputs, input),
        }
    }

    /// The input tick index of a prompt of `input` tokens.
    pub fn input_index(&self, input: u32) -> usize {
        nearest(&self.inputs, input)
    }

    /// Checks ticks: non-empty, ≥ 1, strictly increasing; what is wrong otherwise.
    pub fn problem(&self) -> Option<String> {
        for (what, t) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            if t.is_empty() {
                return Some(format!("{what}: no ticks"));
            }
            if t[0] == 0 || !t.windows(2).all(|w| w[0] < w[1]) {
                return Some(format!("{what}: ticks must be ≥ 1 and strictly increasing"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_in_the_nearest_log2_bucket() {
        let g = Grid::default();
        assert_eq!(g.len(), 100);
        assert_eq!(g.cell(1, 1), Cell { out: 0, inp: 0 });
        assert_eq!(g.cell(1000, 200), Cell { out: 6, inp: 5 }); // 1024 in, 256 out
        assert_eq!(g.cell(1_000_000, 100_000), Cell { out: 9, inp: 9 });
        assert_eq!(
            g.cell_at(g.index(Cell { out: 3, inp: 7 })),
            Cell { out: 3, inp: 7 }
        );
        assert!(g.problem().is_none());
        assert!(
            Grid {
                inputs: vec![4, 4],
                outputs: vec![1]
            }
            .problem()
            .is_some()
        );
    }
}
