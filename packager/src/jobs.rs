//! Independent jobs (one ffmpeg each) across the cores, with a progress bar
//! on a terminal and one line per finished job otherwise. The first failure
//! stops handing out new jobs; running ones finish, and it is returned.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::tool::PackError;

/// How to share the machine: `jobs` at once, each ffmpeg with `threads`.
#[derive(Debug, Clone, Copy)]
pub struct Parallel {
    pub jobs: usize,
    pub threads: usize,
}

impl Parallel {
    /// All of `cores` for `tasks` jobs: as many at once as there are jobs
    /// (up to the cores), the cores left over shared out as threads.
    pub fn for_tasks(cores: usize, tasks: usize) -> Parallel {
        let cores = cores.max(1);
        let jobs = tasks.clamp(1, cores);
        Parallel {
            jobs,
            threads: (cores / jobs).max(1),
        }
    }
}

/// Run `f` on every task, `jobs` at a time; results in task order. `what`
/// names the stage on the progress bar; `done` describes a finished job.
pub fn run<T, R>(
    what: &str,
    jobs: usize,
    tasks: &[T],
    f: impl Fn(&T) -> Result<R, PackError> + Sync,
    done: impl Fn(&T, &R) -> String + Sync,
) -> Result<Vec<R>, PackError>
where
    T: Sync,
    R: Send,
{
    let bar = ProgressBar::with_draw_target(Some(tasks.len() as u64), ProgressDrawTarget::stderr());
    let plain = bar.is_hidden();
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} (eta {eta}) {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..tasks.len()).map(|_| None).collect());
    let first_error: Mutex<Option<PackError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, tasks.len().max(1)) {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else { return };
                    match f(task) {
                        Ok(r) => {
                            let line = done(task, &r);
                            bar.inc(1);
                            if plain {
                                eprintln!(
                                    "oca-pack: {what} {}/{}: {line}",
                                    bar.position(),
                                    tasks.len()
                                );
                            } else {
                                bar.set_message(line);
                            }
                            results.lock().expect("results")[i] = Some(r);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().expect("error") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every task ran"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cores_between_jobs() {
        let p = Parallel::for_tasks(8, 3);
        assert_eq!((p.jobs, p.threads), (3, 2));
        let p = Parallel::for_tasks(2, 20);
        assert_eq!((p.jobs, p.threads), (2, 1));
        let p = Parallel::for_tasks(0, 0);
        assert_eq!((p.jobs, p.threads), (1, 1));
    }

    #[test]
    fn results_in_order_and_the_first_error_wins() {
        let tasks: Vec<u32> = (0..20).collect();
        let r = run("t", 3, &tasks, |t| Ok(t * 2), |_, _| String::new()).unwrap();
        assert_eq!(r, (0..20).map(|t| t * 2).collect::<Vec<_>>());
        let e = run(
            "t",
            2,
            &tasks,
            |t| {
                if *t == 5 {
                    Err(PackError::Usage("five".into()))
                } else {
                    Ok(*t)
                }
            },
            |_, _| String::new(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "five");
    }
}
