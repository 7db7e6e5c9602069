//! The false-rollback rate of the statistical judge next to the fixed-threshold rule, on
//! simulated windows where nothing changed (and, for power, on a real regression), through
//! bagboy's own decision code. Deterministic (xorshift64*, fixed seed); no network.
//!
//! Usage: cargo run --release --example judge_sim
//!
//! The service's error rate is about 4 % (normal noise, sd 0.6 points) per observation. One
//! window is 10 minutes: the judge reads 301 points a side (step 2 s) of the candidate and
//! the baseline; the threshold rule samples a `prometheus` check with `max: 0.05` once a
//! minute (11 rounds, `rollback --auto --watch 10m --interval 1m`) and decides with
//! `auto_trigger: [error_rate_threshold: 5%]`.

use std::time::Duration;

use bagboy::health::judge::{self, Direction, Judge, Metric, Outcome, Side, Window};
use bagboy::health::{decide, AutoTrigger, CheckResult, Decision, Sample, Severity, Verdict};

const WINDOWS: usize = 1000;
const POINTS: usize = 301;
const ROUNDS: usize = 11;
const BASE_RATE: f64 = 0.04;
const NOISE_SD: f64 = 0.006;

struct XorShift(u64);

impl XorShift {
    fn uniform(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Box-Muller.
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn sample(&mut self, n: usize, mean: f64) -> Vec<f64> {
        (0..n)
            .map(|_| self.normal(mean, NOISE_SD).max(0.0))
            .collect()
    }
}

fn judge_config() -> Judge {
    Judge {
        prometheus: "http://127.0.0.1:9090".into(),
        baseline: judge::Baseline::Previous,
        window: Duration::from_secs(600),
        pass: 95.0,
        marginal: 75.0,
        alpha: 0.05,
        metrics: vec![Metric {
            name: "error rate".into(),
            query: "x{version=\"$VERSION\"}".into(),
            direction: Direction::Increase,
            tolerance: 0.25,
            critical: true,
            weight: 1.0,
        }],
    }
}

fn side(values: Vec<f64>, version: &str) -> Side {
    Side {
        version: version.into(),
        query: String::new(),
        window: Window::ending_now(Duration::from_secs(600)),
        values,
        error: None,
    }
}

/// Whether the judge would roll back (fail) on one window.
fn judge_rolls_back(j: &Judge, rng: &mut XorShift, candidate_rate: f64) -> bool {
    let c = rng.sample(POINTS, candidate_rate);
    let b = rng.sample(POINTS, BASE_RATE);
    let r = judge::judge_metric(&j.metrics[0], j.alpha, side(c, "v2"), side(b, "v1"));
    let (_, outcome, _) = judge::score(j, &[r]);
    outcome == Outcome::Fail
}

/// Whether the fixed-threshold rule would roll back on one window.
fn threshold_rolls_back(rng: &mut XorShift, rate: f64) -> bool {
    let samples: Vec<Sample> = rng
        .sample(ROUNDS, rate)
        .into_iter()
        .map(|v| Sample {
            at: String::new(),
            results: vec![CheckResult {
                kind: "prometheus",
                target: "error rate".into(),
                status: if v > 0.05 {
                    Verdict::Failing
                } else {
                    Verdict::Passing
                },
                latency_ms: None,
                value: Some(v),
                detail: String::new(),
            }],
        })
        .collect();
    matches!(
        decide(&samples, &[AutoTrigger::ErrorRate(0.05)]),
        Decision::Trigger { severity, .. } if severity >= Severity::High
    )
}

fn main() {
    let j = judge_config();
    println!("| scenario ({WINDOWS} windows of 10 min) | fixed threshold (`error_rate_threshold: 5%`) | judge (tolerance 25 %, alpha 0.05) |");
    println!("|---|---|---|");
    for (label, rate, what) in [
        ("no difference: 4 % → 4 %", BASE_RATE, "false rollbacks"),
        ("real regression: 4 % → 6 %", 0.06, "rollbacks (detected)"),
        ("small change: 4 % → 4.4 %", 0.044, "rollbacks"),
    ] {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let threshold = (0..WINDOWS)
            .filter(|_| threshold_rolls_back(&mut rng, rate))
            .count();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let judged = (0..WINDOWS)
            .filter(|_| judge_rolls_back(&j, &mut rng, rate))
            .count();
        println!(
            "| {label} | {threshold} {what} ({:.1} %) | {judged} {what} ({:.1} %) |",
            threshold as f64 * 100.0 / WINDOWS as f64,
            judged as f64 * 100.0 / WINDOWS as f64
        );
    }
}
