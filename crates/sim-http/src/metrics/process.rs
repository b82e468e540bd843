//! The `process_*` families Python's Prometheus client exports for vLLM's API server, read from
//! `/proc/self` at scrape time (Linux; elsewhere the families are absent). The `prometheus`
//! crate's `process` feature would pull in `procfs` and its tree for six numbers.

use std::fs;

use prometheus::{Counter, Gauge, Opts, Registry};

/// Clock ticks per second of `/proc` CPU times (`_SC_CLK_TCK`; 100 on every Linux ABI).
const TICKS: f64 = 100.0;

/// The six gauges and counters, with no labels (as the Python client has them).
#[derive(Clone)]
pub(super) struct Process {
    virtual_memory: Gauge,
    resident_memory: Gauge,
    start_time: Gauge,
    cpu_seconds: Counter,
    open_fds: Gauge,
    max_fds: Gauge,
}

/// One reading of `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sample {
    virtual_bytes: f64,
    resident_bytes: f64,
    start_time: f64,
    cpu_seconds: f64,
    open_fds: f64,
    max_fds: f64,
}

impl Process {
    /// Registers the families when `/proc/self` can be read.
    pub(super) fn register(registry: &Registry) -> Result<Option<Self>, prometheus::Error> {
        if read().is_none() {
            return Ok(None);
        }
        let gauge = |name: &str, help: &str| -> Result<Gauge, prometheus::Error> {
            let g = Gauge::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        registry.register(Box::new(cpu.clone()))?;
        Ok(Some(Self {
            virtual_memory: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            resident_memory: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            start_time: gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
            cpu_seconds: cpu,
            open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
            max_fds: gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )?,
        }))
    }

    /// Sets every family from a fresh reading (a failed read leaves the last values).
    pub(super) fn update(&self) {
        let Some(s) = read() else { return };
        self.virtual_memory.set(s.virtual_bytes);
        self.resident_memory.set(s.resident_bytes);
        self.start_time.set(s.start_time);
        let grown = s.cpu_seconds - self.cpu_seconds.get();
        if grown > 0.0 {
            self.cpu_seconds.inc_by(grown);
        }
        self.open_fds.set(s.open_fds);
        self.max_fds.set(s.max_fds);
    }
}

fn read() -> Option<Sample> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // Numbering from field 3 (state) as index 0: utime 14 → 11, stime 15 → 12, starttime 22 → 19.
    let cpu_seconds = (num(11)? + num(12)?) / TICKS;
    let started_ticks = num(19)?;
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v * 1024.0)
    };
    let boot = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let max_fds = fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(Sample {
        virtual_bytes: kib("VmSize:").unwrap_or(0.0),
        resident_bytes: kib("VmRSS:").unwrap_or(0.0),
        start_time: boot + started_ticks / TICKS,
        cpu_seconds,
        open_fds: fs::read_dir("/proc/self/fd").map_or(0, Iterator::count) as f64,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_self_reads_as_this_process() {
        let Some(s) = read() else { return };
        assert!(
            s.resident_bytes > 1e6 && s.virtual_bytes >= s.resident_bytes,
            "{s:?}"
        );
        assert!(s.open_fds >= 3.0 && s.max_fds >= s.open_fds, "{s:?}");
        assert!(s.start_time > 1.6e9 && s.cpu_seconds >= 0.0, "{s:?}");
    }
}
