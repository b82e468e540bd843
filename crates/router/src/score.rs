//! Turning per-strategy costs into comparable scores, as AIBrix's multi-strategy router does.

/// Min-max normalises lower-is-better costs into higher-is-better scores in [0, 1]: the
/// cheapest pod scores 1, the dearest 0; a pod without the signal scores 0; when every scored
/// pod costs the same they all score 1.
pub(crate) fn normalise(costs: &[Option<f64>]) -> Vec<f64> {
    let finite = || costs.iter().filter_map(|c| c.filter(|x| x.is_finite()));
    let (Some(min), Some(max)) = (finite().reduce(f64::min), finite().reduce(f64::max)) else {
        return vec![0.0; costs.len()];
    };
    costs
        .iter()
        .map(|c| match c.filter(|x| x.is_finite()) {
            None => 0.0,
            Some(_) if max == min => 1.0,
            Some(x) => (max - x) / (max - min),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: [(Vec<Option<f64>>, Vec<f64>); 4] = [
            (vec![Some(0.0), Some(5.0), Some(10.0)], vec![1.0, 0.5, 0.0]),
            (vec![Some(3.0), None, Some(3.0)], vec![1.0, 0.0, 1.0]),
            (vec![None, None], vec![0.0, 0.0]),
            (
                vec![Some(f64::NAN), Some(1.0), Some(2.0)],
                vec![0.0, 1.0, 0.0],
            ),
        ];
        for (costs, want) in cases {
            assert_eq!(normalise(&costs), want, "{costs:?}");
        }
    }
}
