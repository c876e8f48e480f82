//! CPU time and memory of this (or another) process, and raising the descriptor limit.
use std::io;
use std::time::Duration;

#[cfg(unix)]
/// User and system CPU time consumed by the whole process (all threads) so far.
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: `getrusage` only writes into the zero-initialized struct we pass; `rusage` is plain
    // old data, so all-zero bytes are a valid value.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit, or raising the hard
/// limit too when the process may). Returns the soft limit now in force.
#[cfg(unix)]
// `rlim_t` is u64 on 64-bit Linux and macOS but not everywhere: keep the conversions.
#[allow(clippy::useless_conversion)]
pub fn raise_fd_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into `lim`, a valid `rlimit` we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if u64::from(lim.rlim_cur) >= want {
        return Ok(u64::from(lim.rlim_cur));
    }
    let mut new = lim;
    new.rlim_cur = want as libc::rlim_t;
    if u64::from(new.rlim_max) < want {
        new.rlim_max = want as libc::rlim_t; // needs CAP_SYS_RESOURCE; falls back below
    }
    // SAFETY: `setrlimit` only reads `new`, a valid `rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        new.rlim_cur = lim.rlim_max;
        new.rlim_max = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(u64::from(new.rlim_cur))
}

/// Peak resident set size of this process in KiB (`VmHWM`), if `/proc` has it.
pub fn peak_rss_kib() -> Option<u64> {
    process_peak_rss_kib(std::process::id())
}

#[cfg(unix)]
/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: `sysconf` has no preconditions; it only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`).
pub fn process_peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Not available off Unix: zero.
#[cfg(not(unix))]
pub fn cpu_time() -> (Duration, Duration) {
    (Duration::ZERO, Duration::ZERO)
}

/// Not available off Unix: reports `want` and does nothing.
#[cfg(not(unix))]
pub fn raise_fd_limit(want: u64) -> io::Result<u64> {
    Ok(want)
}

/// Not available off Unix.
#[cfg(not(unix))]
pub fn process_cpu_time(_pid: u32) -> Option<Duration> {
    None
}
