//! `bagboy health --judge`: the statistical judgement of a release against its baseline,
//! rendered as text or JSON.

use super::text::clean;
use super::{Context, HealthArgs, ListFormat};
use crate::error::{Error, Exit};
use crate::health::judge::{JudgeReport, MetricResult, MetricVerdict, Outcome};
use crate::ops;

fn pct(v: Option<f64>, shift: Option<f64>) -> String {
    match (v, shift) {
        (Some(v), _) => format!("{:+.1} %", v * 100.0),
        // Relative to a zero median: unbounded; the shift in the metric's unit says how much.
        (None, Some(s)) if s != 0.0 => {
            format!("{}∞ (shift {s:+.4})", if s > 0.0 { "+" } else { "-" })
        }
        _ => "-".into(),
    }
}

fn interval(m: &MetricResult) -> String {
    match m.interval {
        Some([lo, hi]) => {
            let one = |v: Option<f64>, sign: f64| match v {
                Some(v) => format!("{:+.1} %", v * 100.0),
                None => format!("{}∞", if sign < 0.0 { "-" } else { "+" }),
            };
            let (sl, sh) = m.shift_interval.map_or((-1.0, 1.0), |[l, h]| (l, h));
            format!("[{}, {}]", one(lo, sl), one(hi, sh))
        }
        None => String::new(),
    }
}

fn mark(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Pass => "✓",
        MetricVerdict::High | MetricVerdict::Low => "✗",
        MetricVerdict::NoData => "?",
    }
}

fn verdict_word(v: MetricVerdict) -> &'static str {
    match v {
        MetricVerdict::Pass => "pass",
        MetricVerdict::High => "high",
        MetricVerdict::Low => "low",
        MetricVerdict::NoData => "no data",
    }
}

/// The judgement as text: one block per metric, then the score and the result.
pub fn text(r: &JudgeReport) -> String {
    let mut s = String::new();
    let window = r.metrics.first().map(|m| &m.candidate.window);
    s.push_str(&format!(
        "judge: {} against baseline {} (Prometheus {}",
        clean(&r.candidate),
        clean(&r.baseline),
        clean(&r.prometheus)
    ));
    if let Some(w) = window {
        let json = serde_json::to_value(w).unwrap_or_default();
        s.push_str(&format!(
            ", {} to {}, step {} s",
            json["start"].as_str().unwrap_or("-"),
            json["end"].as_str().unwrap_or("-"),
            w.step
        ));
    }
    s.push_str(")\n");
    for m in &r.metrics {
        s.push_str(&format!(
            "  {} {}{}: {}\n",
            mark(m.verdict),
            clean(&m.name),
            if m.critical { " (critical)" } else { "" },
            verdict_word(m.verdict)
        ));
        s.push_str(&format!(
            "      samples {} candidate / {} baseline",
            m.samples.candidate, m.samples.baseline
        ));
        if let (Some(u), Some(p)) = (m.u, m.p) {
            s.push_str(&format!(
                ", U = {u}, p = {}, effect {} {} (tolerance {:.1} %, bad: {})",
                if p < 1e-4 {
                    format!("{p:.2e}")
                } else {
                    format!("{p:.4}")
                },
                pct(m.effect, m.shift),
                interval(m),
                m.tolerance * 100.0,
                match m.direction {
                    crate::health::judge::Direction::Increase => "increase",
                    crate::health::judge::Direction::Decrease => "decrease",
                    crate::health::judge::Direction::Either => "either",
                }
            ));
        }
        s.push('\n');
        s.push_str(&format!("      {}\n", clean(&m.reason)));
    }
    s.push_str(&format!(
        "score {} (pass at {}, marginal at {}): {}\n",
        r.score.map_or("-".into(), |v| format!("{v:.1}")),
        r.pass,
        r.marginal,
        match r.result {
            Outcome::Pass => "PASS",
            Outcome::Marginal => "MARGINAL (hold)",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE (not enough data)",
        }
    ));
    s
}

/// `bagboy health --judge`: exit 0 pass, 5 fail, 6 marginal or not enough data.
pub fn health(ctx: &Context, args: &HealthArgs) -> Result<(), Error> {
    let report = ops::judge::judge(&ctx.ws, args.version.as_deref(), args.baseline.as_deref())?;
    match args.format {
        ListFormat::Json => ctx
            .out
            .line(&serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into())),
        ListFormat::Text => ctx.out.raw(&text(&report)),
    }
    match report.result {
        Outcome::Pass => Ok(()),
        Outcome::Fail => Err(Error::Failed(
            format!(
                "{} fails the judge against {}",
                report.candidate, report.baseline
            ),
            Exit::Unhealthy,
        )),
        Outcome::Marginal => Err(Error::Failed(
            format!(
                "{} is marginal against {}: hold; nothing was changed",
                report.candidate, report.baseline
            ),
            Exit::Inconclusive,
        )),
        Outcome::Inconclusive => Err(Error::Failed(
            format!(
                "not enough data to judge {} against {}; nothing was decided",
                report.candidate, report.baseline
            ),
            Exit::Inconclusive,
        )),
    }
}
