//! Per-node times of one tract plan, outside infera: the reproduction of tract's batch-size
//! behaviour in docs/benchmarks.md ("Why batch 8 is slower per image than batch 1").
//!
//! ```text
//! cargo run --release --example plan_profile -- MODEL FACT SHAPE [CALLS]
//! ```
//!
//! FACT is the input fact the plan is optimised for, `8x3x48x192` (concrete) or `Bx3xHxW`
//! (letters are symbols); SHAPE the concrete shape it is run at. Prints the median call, then the
//! time per call by operator and the slowest nodes with their output facts and the nodes they
//! read from.
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let a: Vec<String> = std::env::args().collect();
    let iters: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(10);
    let mut model = tract_onnx::onnx()
        .with_ignore_value_info(true)
        .model_for_path(&a[1])?;
    let fact: TVec<TDim> = a[2]
        .split('x')
        .map(|d| match d.parse::<usize>() {
            Ok(n) => n.to_dim(),
            Err(_) => TDim::Sym(model.sym(d)),
        })
        .collect();
    let run: Vec<usize> = a[3].split('x').map(|s| s.parse().unwrap()).collect();
    model = model.with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), fact))?;
    let t = Instant::now();
    let plan = model.into_optimized()?.into_runnable()?;
    eprintln!("optimise+plan {:?}", t.elapsed());
    let n: usize = run.iter().product();
    let input = tract_ndarray::ArrayD::from_shape_vec(
        run.clone(),
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect(),
    )?;
    let input: Tensor = input.into();
    plan.run(tvec!(input.clone().into_tvalue()))?;
    let mut times = vec![];
    for _ in 0..iters {
        let t = Instant::now();
        plan.run(tvec!(input.clone().into_tvalue()))?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{} fact {} run {:?}: median {:?}",
        a[1],
        a[2],
        run,
        times[times.len() / 2]
    );
    let mut per: HashMap<usize, (Duration, String)> = HashMap::new();
    let mut state = tract_onnx::tract_hir::tract_core::plan::SimpleState::new(&plan)?;
    for _ in 0..iters {
        state.run_plan_with_eval(tvec!(input.clone().into_tvalue()), |s, st, node, inp| {
            let t = Instant::now();
            let r = tract_onnx::tract_hir::tract_core::plan::eval(s, st, node, inp);
            let e = per.entry(node.id).or_insert((
                Duration::ZERO,
                format!("{} {}", node.op().name(), node.name),
            ));
            e.0 += t.elapsed();
            r
        })?;
    }
    let mut v: Vec<_> = per.into_iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1 .0));
    let total: Duration = v.iter().map(|x| x.1 .0).sum();
    println!("total per-node {:?}", total / iters as u32);
    let mut byop: HashMap<String, Duration> = HashMap::new();
    for (_, (d, name)) in &v {
        *byop
            .entry(name.split(' ').next().unwrap().to_string())
            .or_default() += *d;
    }
    let mut bo: Vec<_> = byop.into_iter().collect();
    bo.sort_by_key(|b| std::cmp::Reverse(b.1));
    for (op, d) in bo.iter().take(8) {
        println!("  op {op:30} {:?}", *d / iters as u32);
    }
    for (id, (d, name)) in v.iter().take(12) {
        let node = plan.model().node(*id);
        let from: Vec<&str> = node
            .inputs
            .iter()
            .map(|i| plan.model().node(i.node).name.as_str())
            .collect();
        println!(
            "  #{id:4} {:?} {name} -> {:?} <- {from:?}",
            *d / iters as u32,
            node.outputs[0].fact
        );
    }
    Ok(())
}
