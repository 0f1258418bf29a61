//! Tree ensembles (TreeEnsembleClassifier / TreeEnsembleRegressor): parsing the node and leaf
//! attributes into a compact, cache-friendly layout, and walking it per instance.

use std::collections::HashMap;

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::attrs;

/// Branch comparison of a node: go to the true child when `x <mode> threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

impl Mode {
    fn parse(s: &str) -> Option<Option<Mode>> {
        Some(match s {
            "BRANCH_LEQ" => Some(Mode::Leq),
            "BRANCH_LT" => Some(Mode::Lt),
            "BRANCH_GTE" => Some(Mode::Gte),
            "BRANCH_GT" => Some(Mode::Gt),
            "BRANCH_EQ" => Some(Mode::Eq),
            "BRANCH_NEQ" => Some(Mode::Neq),
            "LEAF" => None,
            _ => return None,
        })
    }
}

/// Marks a leaf in `Node::feature`.
const LEAF: u32 = u32::MAX;

/// One node in 16 bytes. For a leaf (`feature == LEAF`), `true_next..false_next` is its range in
/// the leaf arrays.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    feature: u32,
    threshold: f32,
    true_next: u32,
    false_next: u32,
}

/// What the general walk needs beyond the compact node: its mode, whether NaN goes to the true
/// child, and the threshold at full precision.
#[derive(Debug, Clone, Copy)]
struct Branch {
    mode: Mode,
    nan_true: bool,
    threshold: f64,
}

/// How leaf values of several trees combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub fn parse(s: &str) -> TractResult<Aggregate> {
        Ok(match s {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => bail!("unknown aggregate_function {other}"),
        })
    }
}

/// The parsed forest.
#[derive(Debug, Clone)]
pub struct Forest {
    nodes: Vec<Node>,
    branches: Vec<Branch>,
    roots: Vec<u32>,
    leaf_targets: Vec<u32>,
    leaf_weights: Vec<f64>,
    /// Number of classes or targets the leaves write to.
    pub n_targets: usize,
    /// Largest feature index read.
    pub max_feature: usize,
    /// When every branch uses one mode and no node routes NaN to its true child, the walk is
    /// specialised for that mode.
    uniform: Option<Mode>,
    /// One target: each tree contributes its leaf's first weight (0 if none), as onnxruntime.
    single_target: bool,
}

/// Per-target scores of one instance, with whether any leaf wrote to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub value: f64,
    pub set: bool,
}

impl Forest {
    /// Parses the `nodes_*` and `<leaf>_*` attributes (`leaf` is "class" or "target").
    pub fn parse(node: &NodeProto, leaf: &str, n_targets: usize) -> TractResult<Forest> {
        let name = format!("{} ({})", node.name, node.op_type);
        let nodes = NodeAttrs::read(node, &name)?;
        let index = nodes.index(&name)?;
        let mut leaves = LeafEntries::read(node, leaf, n_targets, &index, &name)?;
        let roots = nodes.check_links(&index, &name)?;
        let mut forest = Forest {
            nodes: Vec::with_capacity(nodes.len()),
            branches: Vec::with_capacity(nodes.len()),
            roots: Vec::with_capacity(roots.len()),
            leaf_targets: Vec::with_capacity(leaves.count),
            leaf_weights: Vec::with_capacity(leaves.count),
            n_targets,
            max_feature: 0,
            uniform: None,
            single_target: n_targets == 1,
        };
        forest.lay_out(&nodes, &index, &roots, &mut leaves, &name)?;
        forest.uniform = forest.uniform_mode();
        Ok(forest)
    }

    /// Lays each tree out depth-first, false child right after its parent. Nodes shared by
    /// several parents (LightGBM's categorical chains) are placed once.
    fn lay_out(
        &mut self,
        nodes: &NodeAttrs,
        index: &NodeIndex,
        roots: &[usize],
        leaves: &mut LeafEntries,
        name: &str,
    ) -> TractResult<()> {
        let mut placed: HashMap<usize, u32> = HashMap::with_capacity(nodes.len());
        let mut fixups: Vec<(u32, usize, bool)> = Vec::new();
        for &root in roots {
            if let Some(at) = placed.get(&root) {
                self.roots.push(*at);
                continue;
            }
            self.roots.push(self.nodes.len() as u32);
            let mut stack = vec![root];
            while let Some(i) = stack.pop() {
                if placed.contains_key(&i) {
                    continue;
                }
                let at = self.nodes.len() as u32;
                placed.insert(i, at);
                match nodes.modes[i] {
                    Some(mode) => {
                        self.push_branch(nodes, i, mode, name)?;
                        let [t, f] = nodes.children(index, i);
                        fixups.push((at, t, true));
                        fixups.push((at, f, false));
                        stack.push(t);
                        stack.push(f);
                    }
                    None => self.push_leaf(leaves.take(i)),
                }
            }
        }
        for (at, target, is_true) in fixups {
            let to = placed[&target];
            let node = &mut self.nodes[at as usize];
            if is_true {
                node.true_next = to;
            } else {
                node.false_next = to;
            }
        }
        Ok(())
    }

    /// Appends branch node `i` (its children are linked once every node is placed).
    fn push_branch(
        &mut self,
        nodes: &NodeAttrs,
        i: usize,
        mode: Mode,
        name: &str,
    ) -> TractResult<()> {
        let feature = nodes.features[i];
        ensure!(
            feature < LEAF as usize,
            "{name}: feature id {feature} is too large"
        );
        self.max_feature = self.max_feature.max(feature);
        self.nodes.push(Node {
            feature: feature as u32,
            threshold: nodes.values[i] as f32,
            true_next: 0,
            false_next: 0,
        });
        self.branches.push(Branch {
            mode,
            nan_true: nodes.nan_true.get(i).is_some_and(|v| *v == 1),
            threshold: nodes.values[i],
        });
        Ok(())
    }

    /// Appends a leaf with its (target, weight) entries.
    fn push_leaf(&mut self, entries: Vec<(u32, f64)>) {
        let start = self.leaf_targets.len() as u32;
        for (target, weight) in entries {
            self.leaf_targets.push(target);
            self.leaf_weights.push(weight);
        }
        let end = self.leaf_targets.len() as u32;
        self.nodes.push(Node {
            feature: LEAF,
            threshold: 0.0,
            true_next: start,
            false_next: end,
        });
        self.branches.push(Branch {
            mode: Mode::Leq,
            nan_true: false,
            threshold: 0.0,
        });
    }

    /// The one comparison every branch uses, when the fast walk may assume it: no branch sends
    /// NaN to its true child and every threshold fits an f32 exactly (double tensors need the
    /// general walk otherwise).
    fn uniform_mode(&self) -> Option<Mode> {
        let inner = || {
            self.nodes
                .iter()
                .zip(&self.branches)
                .filter(|(n, _)| n.feature != LEAF)
                .map(|(_, b)| b)
        };
        let first = inner().next().map(|b| b.mode);
        let any_nan = inner().any(|b| b.nan_true);
        let exact = inner().all(|b| f64::from(b.threshold as f32) == b.threshold);
        if !any_nan && exact && inner().all(|b| Some(b.mode) == first) {
            first.or(Some(Mode::Leq))
        } else {
            None
        }
    }

    /// Scores `rows` instances (row-major `x`, `width` features each) into
    /// `scores[row * n_targets + target]`. Four rows walk each tree together so their memory
    /// loads overlap.
    pub fn score_batch(
        &self,
        x: &[f32],
        rows: usize,
        width: usize,
        aggregate: Aggregate,
        scores: &mut [Score],
    ) {
        scores.iter_mut().for_each(|s| *s = Score::default());
        match self.uniform {
            Some(Mode::Leq) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v <= t),
            Some(Mode::Lt) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v < t),
            Some(Mode::Gte) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v >= t),
            Some(Mode::Gt) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v > t),
            Some(Mode::Eq) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v == t),
            Some(Mode::Neq) => self.walk_rows(x, rows, width, aggregate, scores, |v, t| v != t),
            None => {
                let t = self.n_targets;
                for r in 0..rows {
                    self.score(
                        &x[r * width..(r + 1) * width],
                        aggregate,
                        &mut scores[r * t..(r + 1) * t],
                    );
                }
            }
        }
    }

    #[inline(always)]
    fn walk_rows(
        &self,
        x: &[f32],
        rows: usize,
        width: usize,
        aggregate: Aggregate,
        scores: &mut [Score],
        go_true: impl Fn(f32, f32) -> bool,
    ) {
        const LANES: usize = 4;
        let nodes = &self.nodes[..];
        let targets = self.n_targets;
        for &root in &self.roots {
            let mut r = 0;
            while r < rows {
                let lanes = LANES.min(rows - r);
                let mut at = [root as usize; LANES];
                loop {
                    let mut moved = false;
                    for k in 0..lanes {
                        let node = &nodes[at[k]];
                        if node.feature != LEAF {
                            let v = x[(r + k) * width + node.feature as usize];
                            at[k] = if go_true(v, node.threshold) {
                                node.true_next
                            } else {
                                node.false_next
                            } as usize;
                            moved = true;
                        }
                    }
                    if !moved {
                        break;
                    }
                }
                for k in 0..lanes {
                    let row = &mut scores[(r + k) * targets..(r + k + 1) * targets];
                    self.add_leaf(&nodes[at[k]], aggregate, row);
                }
                r += lanes;
            }
        }
    }

    #[inline(always)]
    fn add_leaf(&self, leaf: &Node, aggregate: Aggregate, scores: &mut [Score]) {
        let (start, end) = (leaf.true_next as usize, leaf.false_next as usize);
        if self.single_target {
            let w = if start < end {
                self.leaf_weights[start]
            } else {
                0.0
            };
            combine(&mut scores[0], w, aggregate);
            return;
        }
        for k in start..end {
            combine(
                &mut scores[self.leaf_targets[k] as usize],
                self.leaf_weights[k],
                aggregate,
            );
        }
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Walks every tree for one instance and combines the leaf values into `scores`.
    pub fn score(&self, x: &[f32], aggregate: Aggregate, scores: &mut [Score]) {
        scores.iter_mut().for_each(|s| *s = Score::default());
        match self.uniform {
            Some(Mode::Leq) => self.walk(x, aggregate, scores, |v, t, _| v <= t),
            Some(Mode::Lt) => self.walk(x, aggregate, scores, |v, t, _| v < t),
            Some(Mode::Gte) => self.walk(x, aggregate, scores, |v, t, _| v >= t),
            Some(Mode::Gt) => self.walk(x, aggregate, scores, |v, t, _| v > t),
            Some(Mode::Eq) => self.walk(x, aggregate, scores, |v, t, _| v == t),
            Some(Mode::Neq) => self.walk(x, aggregate, scores, |v, t, _| v != t),
            None => self.walk(x, aggregate, scores, |v, _, at| {
                let b = &self.branches[at];
                let (v, t) = (f64::from(v), b.threshold);
                let hit = match b.mode {
                    Mode::Leq => v <= t,
                    Mode::Lt => v < t,
                    Mode::Gte => v >= t,
                    Mode::Gt => v > t,
                    Mode::Eq => v == t,
                    Mode::Neq => v != t,
                };
                hit || (b.nan_true && v.is_nan())
            }),
        }
    }

    #[inline(always)]
    fn walk(
        &self,
        x: &[f32],
        aggregate: Aggregate,
        scores: &mut [Score],
        go_true: impl Fn(f32, f32, usize) -> bool,
    ) {
        let nodes = &self.nodes[..];
        for &root in &self.roots {
            let mut at = root as usize;
            loop {
                let node = &nodes[at];
                if node.feature == LEAF {
                    break;
                }
                let v = x[node.feature as usize];
                at = if go_true(v, node.threshold, at) {
                    node.true_next
                } else {
                    node.false_next
                } as usize;
            }
            self.add_leaf(&nodes[at], aggregate, scores);
        }
    }
}

#[inline(always)]
fn combine(s: &mut Score, w: f64, aggregate: Aggregate) {
    match aggregate {
        Aggregate::Sum | Aggregate::Average => s.value += w,
        Aggregate::Min => {
            if !s.set || w < s.value {
                s.value = w;
            }
        }
        Aggregate::Max => {
            if !s.set || w > s.value {
                s.value = w;
            }
        }
    }
    s.set = true;
}

/// (tree id, node id) -> position in the node attributes.
type NodeIndex = HashMap<(usize, usize), usize>;

/// The `nodes_*` attributes of a tree ensemble, checked to have one entry per node.
struct NodeAttrs {
    tree_ids: Vec<usize>,
    node_ids: Vec<usize>,
    features: Vec<usize>,
    /// None for a leaf.
    modes: Vec<Option<Mode>>,
    values: Vec<f64>,
    true_ids: Vec<usize>,
    false_ids: Vec<usize>,
    /// May be shorter than the node list: the rest are 0.
    nan_true: Vec<i64>,
}

impl NodeAttrs {
    fn read(node: &NodeProto, name: &str) -> TractResult<NodeAttrs> {
        let nodes = NodeAttrs {
            tree_ids: attrs::indices(node, "nodes_treeids")?,
            node_ids: attrs::indices(node, "nodes_nodeids")?,
            features: attrs::indices(node, "nodes_featureids")?,
            modes: Vec::new(),
            values: attrs::required_floats(node, "nodes_values")?,
            true_ids: attrs::indices(node, "nodes_truenodeids")?,
            false_ids: attrs::indices(node, "nodes_falsenodeids")?,
            nan_true: attrs::ints(node, "nodes_missing_value_tracks_true")?,
        };
        let modes = attrs::strings(node, "nodes_modes")?;
        let n = nodes.len();
        ensure!(n > 0, "{name}: the ensemble has no nodes");
        for (attr, len) in [
            ("nodes_treeids", nodes.tree_ids.len()),
            ("nodes_featureids", nodes.features.len()),
            ("nodes_modes", modes.len()),
            ("nodes_values", nodes.values.len()),
            ("nodes_truenodeids", nodes.true_ids.len()),
            ("nodes_falsenodeids", nodes.false_ids.len()),
        ] {
            ensure!(
                len == n,
                "{name}: attribute {attr} has {len} entries, nodes_nodeids has {n}"
            );
        }
        let modes = modes
            .iter()
            .map(|m| Mode::parse(m).ok_or_else(|| format_err!("{name}: node mode {m} is not supported (supported: BRANCH_LEQ, BRANCH_LT, BRANCH_GTE, BRANCH_GT, BRANCH_EQ, BRANCH_NEQ, LEAF)")))
            .collect::<TractResult<_>>()?;
        Ok(NodeAttrs { modes, ..nodes })
    }

    fn len(&self) -> usize {
        self.node_ids.len()
    }

    /// Positions by (tree, node); a node defined twice is an error.
    fn index(&self, name: &str) -> TractResult<NodeIndex> {
        let mut index = HashMap::with_capacity(self.len());
        for i in 0..self.len() {
            let key = (self.tree_ids[i], self.node_ids[i]);
            if index.insert(key, i).is_some() {
                bail!("{name}: node {} of tree {} is defined twice", key.1, key.0);
            }
        }
        Ok(index)
    }

    /// Positions of branch `i`'s true and false children.
    fn children(&self, index: &NodeIndex, i: usize) -> [usize; 2] {
        [
            index[&(self.tree_ids[i], self.true_ids[i])],
            index[&(self.tree_ids[i], self.false_ids[i])],
        ]
    }

    /// Checks that every branch's children exist in its tree and that no node is its own
    /// descendant; returns the roots. Trees are runs of consecutive equal tree ids; a tree's
    /// root is the first node of its run (onnxruntime's rule).
    fn check_links(&self, index: &NodeIndex, name: &str) -> TractResult<Vec<usize>> {
        for i in (0..self.len()).filter(|&i| self.modes[i].is_some()) {
            for child in [self.true_ids[i], self.false_ids[i]] {
                ensure!(
                    index.contains_key(&(self.tree_ids[i], child)),
                    "{name}: node {} of tree {} points to missing node {child}",
                    self.node_ids[i],
                    self.tree_ids[i]
                );
            }
        }
        let roots: Vec<usize> = (0..self.len())
            .filter(|&i| i == 0 || self.tree_ids[i] != self.tree_ids[i - 1])
            .collect();
        check_acyclic(&roots, &self.modes, |i| self.children(index, i)).map_err(|node| {
            format_err!(
                "{name}: node {} of tree {} is its own descendant (a cycle)",
                self.node_ids[node],
                self.tree_ids[node]
            )
        })?;
        Ok(roots)
    }
}

/// A tree ensemble's leaf weights (`{leaf}_*` attributes: `target_*` or `class_*`), grouped by
/// the node they belong to, in attribute order.
struct LeafEntries {
    by_node: HashMap<usize, Vec<(u32, f64)>>,
    /// Entries in all.
    count: usize,
}

impl LeafEntries {
    fn read(
        node: &NodeProto,
        leaf: &str,
        n_targets: usize,
        index: &NodeIndex,
        name: &str,
    ) -> TractResult<LeafEntries> {
        let trees = attrs::indices(node, &format!("{leaf}_treeids"))?;
        let nodes = attrs::indices(node, &format!("{leaf}_nodeids"))?;
        let ids = attrs::indices(node, &format!("{leaf}_ids"))?;
        let weights = attrs::required_floats(node, &format!("{leaf}_weights"))?;
        let m = ids.len();
        for (attr, len) in [
            ("treeids", trees.len()),
            ("nodeids", nodes.len()),
            ("weights", weights.len()),
        ] {
            ensure!(
                len == m,
                "{name}: attribute {leaf}_{attr} has {len} entries, {leaf}_ids has {m}"
            );
        }
        let mut by_node: HashMap<usize, Vec<(u32, f64)>> = HashMap::new();
        for k in 0..m {
            let at = *index.get(&(trees[k], nodes[k])).ok_or_else(|| {
                format_err!(
                    "{name}: a leaf weight refers to node {} of tree {}, which does not exist",
                    nodes[k],
                    trees[k]
                )
            })?;
            ensure!(
                ids[k] < n_targets,
                "{name}: leaf writes to {leaf} {} but there are {n_targets}",
                ids[k]
            );
            by_node
                .entry(at)
                .or_default()
                .push((ids[k] as u32, weights[k]));
        }
        Ok(LeafEntries { by_node, count: m })
    }

    /// Node `i`'s entries (none for a leaf without weights).
    fn take(&mut self, i: usize) -> Vec<(u32, f64)> {
        self.by_node.remove(&i).unwrap_or_default()
    }
}

/// Fails with the first node that is its own descendant.
fn check_acyclic(
    roots: &[usize],
    modes: &[Option<Mode>],
    children: impl Fn(usize) -> [usize; 2],
) -> Result<(), usize> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; modes.len()];
    for &root in roots {
        if state[root] != NEW {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = OPEN;
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            if modes[node].is_none() || *next == 2 {
                state[node] = DONE;
                stack.pop();
                continue;
            }
            let child = children(node)[*next];
            *next += 1;
            match state[child] {
                OPEN => return Err(child),
                NEW => {
                    state[child] = OPEN;
                    stack.push((child, 0));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, NodeProto};

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 7,
            ints: v.to_vec(),
            ..Default::default()
        }
    }

    fn floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 6,
            floats: v.to_vec(),
            ..Default::default()
        }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    /// One tree: node 0 tests feature 0 (`mode`, threshold 1.0), true -> leaf 1, false -> leaf 2.
    /// Leaf 1 carries weights `w1`, leaf 2 carries `w2` (target ids 0..).
    fn stump(mode: &str, nan_true: i64, w1: &[f32], w2: &[f32]) -> NodeProto {
        let mut entries: Vec<(i64, i64, f32)> = Vec::new();
        for (node, ws) in [(1, w1), (2, w2)] {
            entries.extend(ws.iter().enumerate().map(|(t, w)| (node, t as i64, *w)));
        }
        NodeProto {
            name: "stump".into(),
            op_type: "TreeEnsembleRegressor".into(),
            attribute: vec![
                ints("nodes_treeids", &[0, 0, 0]),
                ints("nodes_nodeids", &[0, 1, 2]),
                ints("nodes_featureids", &[0, 0, 0]),
                strings("nodes_modes", &[mode, "LEAF", "LEAF"]),
                floats("nodes_values", &[1.0, 0.0, 0.0]),
                ints("nodes_truenodeids", &[1, 0, 0]),
                ints("nodes_falsenodeids", &[2, 0, 0]),
                ints("nodes_missing_value_tracks_true", &[nan_true]),
                ints("target_treeids", &vec![0; entries.len()]),
                ints(
                    "target_nodeids",
                    &entries.iter().map(|e| e.0).collect::<Vec<_>>(),
                ),
                ints(
                    "target_ids",
                    &entries.iter().map(|e| e.1).collect::<Vec<_>>(),
                ),
                floats(
                    "target_weights",
                    &entries.iter().map(|e| e.2).collect::<Vec<_>>(),
                ),
            ],
            ..Default::default()
        }
    }

    fn score(forest: &Forest, x: f32, aggregate: Aggregate) -> Vec<Score> {
        let mut scores = vec![Score::default(); forest.n_targets];
        forest.score(&[x], aggregate, &mut scores);
        scores
    }

    #[test]
    fn modes_and_missing_values_route_like_onnxruntime() {
        let leq = Forest::parse(&stump("BRANCH_LEQ", 0, &[10.0], &[20.0]), "target", 1).unwrap();
        assert_eq!(score(&leq, 1.0, Aggregate::Sum)[0].value, 10.0);
        assert_eq!(score(&leq, 1.5, Aggregate::Sum)[0].value, 20.0);
        assert_eq!(
            score(&leq, f32::NAN, Aggregate::Sum)[0].value,
            20.0,
            "NaN goes false"
        );
        let lt = Forest::parse(&stump("BRANCH_LT", 0, &[10.0], &[20.0]), "target", 1).unwrap();
        assert_eq!(score(&lt, 1.0, Aggregate::Sum)[0].value, 20.0);
        let neq = Forest::parse(&stump("BRANCH_NEQ", 0, &[10.0], &[20.0]), "target", 1).unwrap();
        assert_eq!(
            score(&neq, f32::NAN, Aggregate::Sum)[0].value,
            10.0,
            "NaN != t is true"
        );
        let tracked =
            Forest::parse(&stump("BRANCH_LEQ", 1, &[10.0], &[20.0]), "target", 1).unwrap();
        assert_eq!(
            score(&tracked, f32::NAN, Aggregate::Sum)[0].value,
            10.0,
            "missing value tracks true"
        );
    }

    #[test]
    fn one_target_uses_the_first_weight_of_a_leaf_and_several_targets_sum_them() {
        let node = stump("BRANCH_LEQ", 0, &[1.0, 5.0], &[2.0]);
        let mut one_target = node.clone();
        one_target.attribute[10] = ints("target_ids", &[0, 0, 0]);
        let single = Forest::parse(&one_target, "target", 1).unwrap();
        assert_eq!(
            score(&single, 0.0, Aggregate::Sum)[0].value,
            1.0,
            "only the first weight counts"
        );
        let multi = Forest::parse(&node, "target", 2).unwrap();
        let s = score(&multi, 0.0, Aggregate::Sum);
        assert_eq!((s[0].value, s[1].value), (1.0, 5.0));
        let s = score(&multi, 2.0, Aggregate::Sum);
        assert!(s[0].set && !s[1].set, "target 1 is not reached from leaf 2");
    }

    #[test]
    fn malformed_trees_are_rejected_at_load() {
        let mut bad = stump("BRANCH_LEQ", 0, &[1.0], &[2.0]);
        bad.attribute[5] = ints("nodes_truenodeids", &[7, 0, 0]);
        let err = Forest::parse(&bad, "target", 1).unwrap_err().to_string();
        assert!(err.contains("points to missing node 7"), "{err}");
        let mut cycle = stump("BRANCH_LEQ", 0, &[1.0], &[2.0]);
        cycle.attribute[3] = strings("nodes_modes", &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"]);
        cycle.attribute[5] = ints("nodes_truenodeids", &[1, 0, 0]);
        cycle.attribute[6] = ints("nodes_falsenodeids", &[2, 2, 0]);
        let err = Forest::parse(&cycle, "target", 1).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
        let member = stump("BRANCH_MEMBER", 0, &[1.0], &[2.0]);
        let err = Forest::parse(&member, "target", 1).unwrap_err().to_string();
        assert!(err.contains("BRANCH_MEMBER is not supported"), "{err}");
    }
}
