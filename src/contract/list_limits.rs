//! Bounds on the lists of a named-tensor request (V2 JSON, V2 binary, gRPC `ModelInfer`) other
//! than its values: how many tensors, how many dimensions per shape, how many parameters. They
//! are held while a request is decoded, so a list the client makes long costs the bytes read up
//! to the limit, never a decoded list of the whole body.

/// The limits (`--max-tensors`, `--max-rank`, `--max-parameters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// Input tensors, requested outputs and raw contents entries of one request, each.
    pub max_tensors: usize,
    /// Dimensions of one tensor's shape.
    pub max_rank: usize,
    /// Parameters of one request: its own and its tensors' together.
    pub max_parameters: usize,
}

impl ListLimits {
    /// The limit that holds `list`.
    pub fn of(&self, list: RequestList) -> usize {
        match list {
            RequestList::Inputs | RequestList::Outputs | RequestList::RawContents => {
                self.max_tensors
            }
            RequestList::Shape => self.max_rank,
            RequestList::Parameters => self.max_parameters,
        }
    }
}

/// A list of a request that a [`ListLimits`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestList {
    /// The input tensors (`inputs`).
    Inputs,
    /// The requested outputs (`outputs`).
    Outputs,
    /// gRPC `raw_input_contents` entries.
    RawContents,
    /// One tensor's `shape`.
    Shape,
    /// The request's parameters, its tensors' included.
    Parameters,
}

impl RequestList {
    /// The field's name in the protocol.
    pub fn field(self) -> &'static str {
        match self {
            RequestList::Inputs => "inputs",
            RequestList::Outputs => "outputs",
            RequestList::RawContents => "raw_input_contents",
            RequestList::Shape => "shape",
            RequestList::Parameters => "parameters",
        }
    }

    /// What is counted, for messages: "more than 32 {what}".
    pub fn what(self) -> &'static str {
        match self {
            RequestList::Inputs => "inputs in one request",
            RequestList::Outputs => "requested outputs in one request",
            RequestList::RawContents => "raw_input_contents entries in one request",
            RequestList::Shape => "dimensions in one tensor's shape",
            RequestList::Parameters => "parameters in one request",
        }
    }

    /// The flag that sets its limit.
    pub fn flag(self) -> &'static str {
        match self {
            RequestList::Inputs | RequestList::Outputs | RequestList::RawContents => {
                "--max-tensors"
            }
            RequestList::Shape => "--max-rank",
            RequestList::Parameters => "--max-parameters",
        }
    }

    /// The stable error kind of a refusal (`error_type`, metric reason).
    pub fn error_type(self) -> &'static str {
        match self {
            RequestList::Inputs | RequestList::Outputs | RequestList::RawContents => {
                "too_many_tensors"
            }
            RequestList::Shape => "too_many_dimensions",
            RequestList::Parameters => "too_many_parameters",
        }
    }
}
