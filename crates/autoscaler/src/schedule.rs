//! `spec.schedules`: daily windows with their own replica bounds, for schedules in UTC.
//!
//! The driver's clock is seconds since an arbitrary start, so schedules apply only when the
//! driver says which Unix time its zero is ([`crate::Autoscaler::with_schedules`]). A
//! schedule with another time zone is not applied (Brix carries no time-zone database); it is
//! listed by [`Schedules::unapplied`] so the driver can say so. The first active schedule in
//! document order sets the bounds; a bound it leaves unset is the spec's.

use brix_api::{DayOfWeek, Schedule};

/// One UTC schedule, resolved.
#[derive(Clone, Debug, PartialEq)]
struct Window {
    name: String,
    days: Vec<DayOfWeek>,
    start_min: u16,
    end_min: u16,
    min: Option<u32>,
    max: Option<u32>,
}

/// The schedules of one autoscaler and the Unix time of the driver's clock zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedules {
    epoch_unix_s: f64,
    windows: Vec<Window>,
    unapplied: Vec<String>,
}

/// Whether `tz` names UTC.
fn is_utc(tz: Option<&str>) -> bool {
    matches!(tz, None | Some("UTC" | "Etc/UTC" | "Etc/GMT" | "GMT" | "Z"))
}

impl Schedules {
    /// `schedules` (validated) for a driver whose clock reads 0 at Unix time `epoch_unix_s`.
    pub fn new(schedules: &[Schedule], epoch_unix_s: f64) -> Self {
        let mut out = Self {
            epoch_unix_s,
            ..Self::default()
        };
        for s in schedules {
            match s.window_minutes() {
                Some((start_min, end_min)) if is_utc(s.timezone.as_deref()) => {
                    out.windows.push(Window {
                        name: s.name.clone(),
                        days: s.days_of_week.clone(),
                        start_min,
                        end_min,
                        min: s.min_replicas,
                        max: s.max_replicas,
                    });
                }
                _ => out.unapplied.push(s.name.clone()),
            }
        }
        out
    }

    /// Names of the schedules not applied (not in UTC).
    pub fn unapplied(&self) -> &[String] {
        &self.unapplied
    }

    /// The active schedule at driver time `now`: its name and `(min, max)` overrides.
    pub fn active(&self, now: f64) -> Option<(&str, Option<u32>, Option<u32>)> {
        let unix = self.epoch_unix_s + now;
        if !unix.is_finite() || self.windows.is_empty() {
            return None;
        }
        let day_index = (unix / 86_400.0).floor();
        let minute = ((unix - day_index * 86_400.0) / 60.0).floor() as u16;
        // 1970-01-01 was a Thursday.
        let weekday = [
            DayOfWeek::Thu,
            DayOfWeek::Fri,
            DayOfWeek::Sat,
            DayOfWeek::Sun,
            DayOfWeek::Mon,
            DayOfWeek::Tue,
            DayOfWeek::Wed,
        ][(day_index.rem_euclid(7.0)) as usize];
        self.windows
            .iter()
            .find(|w| {
                (w.days.is_empty() || w.days.contains(&weekday))
                    && w.start_min <= minute
                    && minute < w.end_min
            })
            .map(|w| (w.name.as_str(), w.min, w.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(name: &str, tz: Option<&str>, days: &[DayOfWeek], min: u32) -> Schedule {
        Schedule {
            name: name.into(),
            timezone: tz.map(Into::into),
            days_of_week: days.to_vec(),
            start_time: "09:00".into(),
            end_time: "17:00".into(),
            min_replicas: Some(min),
            max_replicas: None,
        }
    }

    #[test]
    fn utc_windows_by_day_and_minute() {
        // 2026-11-30 00:00 UTC is a Monday: 1_795_996_800.
        let monday = 1_795_996_800.0;
        let s = Schedules::new(
            &[
                schedule("weekdays", None, &[DayOfWeek::Mon, DayOfWeek::Tue], 4),
                schedule("daily", Some("UTC"), &[], 2),
                schedule("paris", Some("Europe/Paris"), &[], 9),
            ],
            monday,
        );
        assert_eq!(s.unapplied(), ["paris".to_string()]);
        let h = 3600.0;
        assert_eq!(s.active(8.0 * h + 3599.0), None);
        assert_eq!(s.active(9.0 * h), Some(("weekdays", Some(4), None)));
        assert_eq!(s.active(17.0 * h), None);
        // Wednesday: only the daily one.
        assert_eq!(
            s.active(2.0 * 24.0 * h + 10.0 * h),
            Some(("daily", Some(2), None))
        );
        assert_eq!(Schedules::default().active(0.0), None);
    }
}
