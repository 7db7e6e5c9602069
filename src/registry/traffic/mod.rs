//! Blue-green traffic: the weights a load balancer gives the two environments, observed and
//! set through one small trait ([`Switch`]) with two implementations: HAProxy's runtime API
//! (`haproxy.rs`) and a user script (`command.rs`). As a plan backend (`format: traffic`,
//! never configured under `registries:`) it runs the one-step switch of an instant rollback,
//! journaled and compensated like any step; `bagboy promote` drives the gradual shift.

mod command;
mod haproxy;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::RegistryConfig;
use crate::health::config::{Balancer, Traffic};
use crate::history::{Package, Problem, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    BackendError, BoxFuture, Env, Kind, Observation, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};

pub const SWITCH: &str = "switch_traffic";
pub const SHIFT: &str = "shift_traffic";

/// HAProxy's weights go from 0 to 256.
pub const MAX_WEIGHT: u32 = 256;

pub static TRAFFIC: Kind = Kind {
    name: "traffic",
    aliases: &[],
    registry_is_path: false,
    recorded: false,
    check: refuse_in_registries,
    open: open_traffic,
};

fn refuse_in_registries(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Err(vec![Problem {
        loc: cfg.loc,
        message: "traffic is configured under `deployment.traffic`, not `registries:`".into(),
    }])
}

/// Blue or green.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub fn parse(s: &str) -> Option<Color> {
        match s {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
}

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub blue: u32,
    pub green: u32,
}

impl Weights {
    /// All traffic to `color`.
    pub fn all_to(color: Color) -> Weights {
        Weights::split(color, 100)
    }

    /// `percent` of the traffic to `color`, the rest to the other.
    pub fn split(color: Color, percent: u32) -> Weights {
        let p = percent.min(100);
        match color {
            Color::Blue => Weights {
                blue: p,
                green: 100 - p,
            },
            Color::Green => Weights {
                blue: 100 - p,
                green: p,
            },
        }
    }

    pub fn of(&self, color: Color) -> u32 {
        match color {
            Color::Blue => self.blue,
            Color::Green => self.green,
        }
    }

    /// The environment taking all traffic; `None` while it is split (or none gets any).
    pub fn live(&self) -> Option<Color> {
        match (self.blue, self.green) {
            (b, 0) if b > 0 => Some(Color::Blue),
            (0, g) if g > 0 => Some(Color::Green),
            _ => None,
        }
    }

    /// The environment taking more of the traffic.
    pub fn leading(&self) -> Option<Color> {
        use std::cmp::Ordering::*;
        match self.blue.cmp(&self.green) {
            Greater => Some(Color::Blue),
            Less => Some(Color::Green),
            Equal => None,
        }
    }

    /// The share of `color`, in percent (rounded).
    pub fn percent(&self, color: Color) -> u32 {
        let total = (self.blue + self.green).max(1);
        (self.of(color) * 100 + total / 2) / total
    }

    /// Percentages, for people: `blue 75% / green 25%`.
    pub fn shown(&self) -> String {
        let total = (self.blue + self.green).max(1);
        let pct = |w: u32| (w * 100 + total / 2) / total;
        format!("blue {}% / green {}%", pct(self.blue), pct(self.green))
    }

    pub fn to_json(self) -> Value {
        json!({ "blue": self.blue, "green": self.green })
    }

    pub fn from_json(v: &Value) -> Option<Weights> {
        let get = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .filter(|w| *w <= MAX_WEIGHT as u64)
                .map(|w| w as u32)
        };
        Some(Weights {
            blue: get("blue")?,
            green: get("green")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{balancer}: {message}")]
pub struct TrafficError {
    pub balancer: String,
    pub message: String,
    /// The request may have reached the balancer (no answer after sending).
    pub sent: bool,
}

impl BackendError for TrafficError {
    fn may_have_landed(&self) -> bool {
        self.sent
    }

    fn is_input(&self) -> bool {
        false
    }
}

/// Observe and set the two weights.
pub trait Switch: Send + Sync {
    /// What it talks to, for messages and the plan (`haproxy 127.0.0.1:9999 backend app`).
    fn describe(&self) -> String;
    /// The balancer's weights now.
    fn weights(&self) -> BoxFuture<'_, Result<Weights, TrafficError>>;
    /// Set one environment's weight.
    fn set(&self, color: Color, weight: u32) -> BoxFuture<'_, Result<(), TrafficError>>;
    /// Whether observing runs a program from the config (never done by a dry-run).
    fn runs_a_program(&self) -> bool;
}

/// The switch `deployment.traffic` names.
pub fn open(t: &Traffic) -> Arc<dyn Switch> {
    match &t.balancer {
        Balancer::Haproxy { address, backend } => Arc::new(haproxy::Haproxy::new(
            address,
            backend,
            &t.blue.server,
            &t.green.server,
        )),
        Balancer::Command { command } => Arc::new(command::Script::new(command)),
    }
}

/// Move to `to`: the environment gaining traffic is raised first, so no moment has both at 0.
pub async fn set_weights(s: &dyn Switch, from: Weights, to: Weights) -> Result<(), TrafficError> {
    let order = if to.blue > from.blue {
        [Color::Blue, Color::Green]
    } else {
        [Color::Green, Color::Blue]
    };
    for c in order {
        if from.of(c) != to.of(c) {
            s.set(c, to.of(c)).await?;
        }
    }
    Ok(())
}

fn open_traffic(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let Some(t) = env.traffic.as_ref() else {
        return Err(RegistryError::Invalid {
            registry: cfg.registry.clone(),
            message: "bagboy.yaml has no `deployment.traffic`".into(),
        });
    };
    let switch = open(t);
    if switch.describe() != cfg.registry {
        return Err(RegistryError::Invalid {
            registry: cfg.registry.clone(),
            message: format!("not the configured balancer ({})", switch.describe()),
        });
    }
    Ok(Arc::new(TrafficRegistry {
        name: switch.describe(),
        switch,
    }))
}

/// The one-step switch of an instant rollback, as a plan backend.
pub struct TrafficRegistry {
    name: String,
    switch: Arc<dyn Switch>,
}

/// The plan of an instant switch from `before` to all traffic on `to`.
pub fn switch_plan(switch: &dyn Switch, before: Weights, to: Color, why: String) -> RegistryPlan {
    let after = Weights::all_to(to);
    let mut s = Step::new(
        if before == after {
            Action::unchanged()
        } else {
            Action::change(SWITCH)
        },
        format!("traffic → {to}"),
    );
    s.before = Some(before.shown());
    s.after = Some(after.shown());
    s.detail = Some(why);
    s.data = json!({ "before": before.to_json(), "after": after.to_json() });
    RegistryPlan {
        format: TRAFFIC.name.to_string(),
        registry: switch.describe(),
        steps: vec![s],
        notes: vec![
            "who this reaches: every new request through the balancer, at once; the environment switched away from keeps running for the next switch".into(),
        ],
    }
}

fn step_weights(step: &Step) -> Option<(Weights, Weights)> {
    Some((
        Weights::from_json(&step.data["before"])?,
        Weights::from_json(&step.data["after"])?,
    ))
}

impl TrafficRegistry {
    fn invalid(&self, message: &str) -> RegistryError {
        RegistryError::Invalid {
            registry: self.name.clone(),
            message: message.into(),
        }
    }
}

impl Registry for TrafficRegistry {
    fn format(&self) -> &str {
        TRAFFIC.name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn plan<'a>(
        &'a self,
        _input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(async move { Err(self.invalid("traffic is planned by the rollback itself")) })
    }

    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Value, RegistryError>> {
        Box::pin(async move {
            let (_, after) = step_weights(step).ok_or_else(|| self.invalid("malformed step"))?;
            // From what the balancer holds now (a step replayed by `recover` lands the same).
            let now = self.switch.weights().await?;
            set_weights(&*self.switch, now, after).await?;
            Ok(json!({}))
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        _state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        // Undo puts the observed weights back, whatever the balancer holds now.
        Box::pin(async move {
            let (before, _) = step_weights(step).ok_or_else(|| self.invalid("malformed step"))?;
            let now = self.switch.weights().await?;
            set_weights(&*self.switch, now, before).await?;
            Ok(())
        })
    }

    fn observe_release<'a>(
        &'a self,
        _version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>> {
        Box::pin(async move { Err(self.invalid("traffic records no release")) })
    }

    fn restored_package(&self, _plan: &RegistryPlan, _target: Option<&Package>) -> Option<Package> {
        None
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        _undo: Option<&'a Value>,
        _recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let weights = step_weights(step).filter(|(b, a)| {
                (b.blue + b.green) > 0
                    && (a.blue + a.green) > 0
                    && [b, a]
                        .iter()
                        .all(|w| w.blue <= MAX_WEIGHT && w.green <= MAX_WEIGHT)
            });
            match (step.action.as_str(), weights) {
                // An instant switch: all traffic to one environment.
                (SWITCH, Some((_, a))) if a.live().is_some() => Ok(()),
                // A promotion's shift: a split between the two configured environments.
                (SHIFT, Some(_)) => Ok(()),
                (SWITCH | SHIFT, _) => {
                    Err("the step's weights are not a move between the two environments".into())
                }
                (other, _) => Err(format!("`{other}` is not a traffic step")),
            }
        })
    }
}
