//! Where a forward pass spends its time, by phase, for `bench --profile`. Off, a section costs
//! one thread-local read. On, each section waits for its device before and after, so that the
//! GPU's time lands in the phase that queued the work; that waiting slows the pass, so a
//! profiled run reports shares of time, not speed. Nested sections count exclusively: an
//! inner section's time is not also the outer one's.

use std::cell::RefCell;
use std::time::Instant;

use candle_core::Device;

/// The phases a pass is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Token ids to hidden states, and the batch's mask and RoPE tables.
    Embed,
    /// The layers' linear projections (attention and MLP).
    Matmul,
    /// RoPE, scores, softmax and the weighted sum of values.
    Attention,
    /// RMSNorm, SiLU·up and the residual additions.
    Elementwise,
    /// The final norm and the LM head.
    Head,
    /// Log-softmax, NLL, top-k and the comparison with the baseline, read back to the host.
    Scoring,
    /// Everything at a link: the codec, copies, error statistics, synchronizations.
    Link,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Embed,
        Phase::Matmul,
        Phase::Attention,
        Phase::Elementwise,
        Phase::Head,
        Phase::Scoring,
        Phase::Link,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Embed => "embed",
            Phase::Matmul => "matmuls",
            Phase::Attention => "attention",
            Phase::Elementwise => "norms",
            Phase::Head => "head",
            Phase::Scoring => "scoring",
            Phase::Link => "links",
        }
    }
}

/// Seconds per phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseTimes([f64; Phase::ALL.len()]);

impl PhaseTimes {
    pub fn get(&self, phase: Phase) -> f64 {
        self.0[phase as usize]
    }

    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }
}

struct Profiler {
    times: PhaseTimes,
    /// Open sections, innermost last, each with when it last started counting.
    open: Vec<(Phase, Instant)>,
}

thread_local! {
    static PROFILER: RefCell<Option<Profiler>> = const { RefCell::new(None) };
}

/// Starts profiling this thread's sections, from zero.
pub fn start() {
    PROFILER.with(|p| {
        *p.borrow_mut() = Some(Profiler {
            times: PhaseTimes::default(),
            open: Vec::new(),
        })
    });
}

/// Stops profiling and returns the times gathered since [`start`].
pub fn stop() -> PhaseTimes {
    PROFILER.with(|p| p.borrow_mut().take().map(|p| p.times).unwrap_or_default())
}

fn enabled() -> bool {
    PROFILER.with(|p| p.borrow().is_some())
}

/// Runs `f` as a section of `phase` on `device`.
pub fn section<T, E>(
    phase: Phase,
    device: &Device,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    E: From<candle_core::Error>,
{
    if !enabled() {
        return f();
    }
    device.synchronize()?;
    PROFILER.with(|p| {
        if let Some(p) = p.borrow_mut().as_mut() {
            let now = Instant::now();
            if let Some((outer, since)) = p.open.last_mut() {
                p.times.0[*outer as usize] += now.duration_since(*since).as_secs_f64();
            }
            p.open.push((phase, now));
        }
    });
    let result = f();
    device.synchronize()?;
    PROFILER.with(|p| {
        if let Some(p) = p.borrow_mut().as_mut() {
            let now = Instant::now();
            if let Some((phase, since)) = p.open.pop() {
                p.times.0[phase as usize] += now.duration_since(since).as_secs_f64();
            }
            if let Some((_, since)) = p.open.last_mut() {
                *since = now;
            }
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(ms: u64) -> Result<(), candle_core::Error> {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(())
    }

    /// Nested sections count exclusively; nothing is counted when profiling is off.
    #[test]
    fn sections_count_exclusive_time() {
        let cpu = Device::Cpu;
        section(Phase::Head, &cpu, || busy(5)).unwrap();
        start();
        section(Phase::Link, &cpu, || {
            busy(10)?;
            section(Phase::Matmul, &cpu, || busy(100))?;
            busy(10)
        })
        .unwrap();
        let times = stop();
        assert_eq!(times.get(Phase::Head), 0.0);
        // Counted inclusively, the link would hold 120 ms.
        let (link, matmul) = (times.get(Phase::Link), times.get(Phase::Matmul));
        assert!((0.020..0.080).contains(&link), "{link}");
        assert!(matmul >= 0.100, "{matmul}");
        assert!((times.total() - link - matmul).abs() < 1e-12);
        assert_eq!(stop().total(), 0.0);
    }
}
