//! CPU time from /proc: the server's (a process and all its descendants, e.g.
//! an nginx master and its workers) and the client's own.
//!
//! Requests per second alone cannot say which server is cheaper; CPU seconds
//! per GiB served can. And the client's CPU says whether the client, not the
//! server, was the ceiling.

use std::collections::HashMap;
use std::fs;

use anyhow::{Result, bail};

/// The fields of /proc/<pid>/stat that CPU accounting needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    /// User and system time in clock ticks, summed over the process's threads.
    pub utime: u64,
    pub stime: u64,
}

/// Parses one /proc/<pid>/stat line. The command name is in parentheses and
/// may itself contain spaces and parentheses, so the fields after it are
/// found from the *last* ')'.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = line[..open].trim().parse().ok()?;
    let comm = line[open + 1..close].to_owned();
    // After the name: state(3) ppid(4) … utime(14) stime(15), numbered as in proc(5).
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
    })
}

/// CPU ticks of `root` and all its descendants among `procs`.
pub fn tree_ticks(procs: &[ProcStat], root: u32) -> Option<u64> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let top = procs.iter().find(|p| p.pid == root)?;
    let mut total = 0;
    let mut stack = vec![top];
    while let Some(p) = stack.pop() {
        total += p.utime + p.stime;
        // pid 0 is the parent of init and kthreadd only; never a real child.
        if p.pid != 0 {
            stack.extend(children.get(&p.pid).into_iter().flatten());
        }
    }
    Some(total)
}

/// Every process's stat line. Processes that exit while being read are skipped.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let name = name.to_str()?;
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parse_stat(&fs::read_to_string(e.path().join("stat")).ok()?)
    })
    .collect()
}

/// Seconds per clock tick of /proc times.
pub fn tick_secs() -> f64 {
    1.0 / rustix::param::clock_ticks_per_second() as f64
}

/// CPU seconds at one instant: per server pid (with descendants), and this process.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub server: Vec<Option<u64>>,
    pub client: u64,
}

/// Reads CPU counters for the given server pids and this process.
pub fn sample(server_pids: &[u32]) -> Sample {
    let procs = if server_pids.is_empty() {
        Vec::new()
    } else {
        all_processes()
    };
    let client = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|l| parse_stat(&l))
        .map_or(0, |p| p.utime + p.stime);
    Sample {
        server: server_pids.iter().map(|&p| tree_ticks(&procs, p)).collect(),
        client,
    }
}

/// Checks up front that every server pid exists, so a typo is a one-line
/// error rather than a report with no server figures.
pub fn check_pids(pids: &[u32]) -> Result<()> {
    for pid in pids {
        if fs::metadata(format!("/proc/{pid}/stat")).is_err() {
            bail!("--server-pid {pid}: no such process");
        }
    }
    Ok(())
}

/// CPU used between two samples: server seconds (None if a pid vanished) and
/// client seconds.
pub fn used(before: &Sample, after: &Sample) -> (Option<f64>, f64) {
    let tick = tick_secs();
    let server = if before.server.is_empty() {
        None
    } else {
        before
            .server
            .iter()
            .zip(&after.server)
            .map(|(b, a)| Some(a.as_ref()?.saturating_sub(*b.as_ref()?)))
            .sum::<Option<u64>>()
            .map(|t| t as f64 * tick)
    };
    let client = after.client.saturating_sub(before.client) as f64 * tick;
    (server, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, comm: &str, ppid: u32, utime: u64, stime: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 \
             12345 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let p = parse_stat(&stat(42, "nginx: worker (x) )", 7, 150, 25)).unwrap();
        assert_eq!(p.pid, 42);
        assert_eq!(p.comm, "nginx: worker (x) )");
        assert_eq!(p.ppid, 7);
        assert_eq!((p.utime, p.stime), (150, 25));

        let real = "1 (systemd) S 0 1 1 0 -1 4194560 47000 2000000 100 900 90 250 \
                    3000 1500 20 0 1 0 10 170000000 3000 18446744073709551615";
        let p = parse_stat(real).unwrap();
        assert_eq!((p.pid, p.ppid, p.utime, p.stime), (1, 0, 90, 250));
    }

    #[test]
    fn rejects_truncated_lines() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("12 x) S 1"), None);
        assert_eq!(parse_stat("x (x) S 1 1 1 0 -1 1 1 1 1 1 5 5"), None);
    }

    #[test]
    fn sums_a_process_tree() {
        let procs: Vec<ProcStat> = [
            stat(1, "init", 0, 1000, 1000),
            stat(10, "nginx: master", 1, 1, 2),
            stat(11, "nginx: worker", 10, 100, 50),
            stat(12, "nginx: worker", 10, 200, 60),
            stat(13, "helper (child)", 12, 5, 5),
            stat(20, "other", 1, 999, 999),
        ]
        .iter()
        .map(|l| parse_stat(l).unwrap())
        .collect();
        assert_eq!(tree_ticks(&procs, 10), Some(3 + 150 + 260 + 10));
        assert_eq!(tree_ticks(&procs, 11), Some(150));
        assert_eq!(tree_ticks(&procs, 99), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        check_pids(&[me]).unwrap();
        assert!(check_pids(&[u32::MAX]).is_err());
        let before = sample(&[me]);
        // Burn a little CPU so the counters move.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = sample(&[me]);
        let (server, client) = used(&before, &after);
        assert!(server.unwrap() >= 0.0 && client >= 0.0);
        assert!(tick_secs() > 0.0 && tick_secs() <= 0.01);
    }
}
