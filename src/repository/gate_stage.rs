//! The stages of the validation gate, named by a rejected version's state and by metric labels.

use serde::Serialize;

/// The stages of the gate, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStage {
    /// Compile, check the card against the graph, warm up.
    Load,
    /// Same inputs and outputs as the serving version (or a declared breaking change).
    Contract,
    /// `golden.json` reproduced.
    Golden,
    /// `eval.json` scored against the card's `[gate]` targets and the serving version.
    Eval,
    /// Served as a canary and rolled back (by its rule or the admin API).
    Canary,
}

impl GateStage {
    /// Also a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GateStage::Load => "load",
            GateStage::Contract => "contract",
            GateStage::Golden => "golden",
            GateStage::Eval => "eval",
            GateStage::Canary => "canary",
        }
    }
}
