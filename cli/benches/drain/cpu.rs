//! CPU time from /proc: the benchmark's own (mostly the broker's) and that
//! of the drain processes it waited for. What tells a CPU-bound stage from
//! one that waits.

/// Clock ticks per second of /proc/*/stat (the Linux default).
const TICKS_PER_SECOND: f64 = 100.0;

/// (user + system of this process, user + system of its waited-for children)
fn stat() -> (f64, f64) {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14–17 of the line; `rest`
    // starts at field 3.
    let at = |n: usize| fields.get(n - 3).copied().unwrap_or(0.0);
    (
        (at(14) + at(15)) / TICKS_PER_SECOND,
        (at(16) + at(17)) / TICKS_PER_SECOND,
    )
}

/// CPU seconds of this process so far.
pub fn own_seconds() -> f64 {
    stat().0
}

/// CPU seconds of the child processes waited for so far.
pub fn children_seconds() -> f64 {
    stat().1
}
