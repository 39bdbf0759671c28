use offramp_engines::{BackendKind, EngineSet};
use offramp_runtime::exit_chain::{ExitChain, ExitPolicy};
use offramp_runtime::preprocess::Preprocessor;
use offramp_sim::npy;
use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let d = Path::new(&args[1]);
    let set = EngineSet::open(&args[2]).unwrap();
    let mut chain = ExitChain::new(&set, BackendKind::Cpu).unwrap();
    let (shape, frames) = npy::read::<u8>(&d.join("frames.npy")).unwrap();
    let (_, ins) = npy::read::<i64>(&d.join("instructions.npy")).unwrap();
    let (_, ep) = npy::read::<i32>(&d.join("episodes.npy")).unwrap();
    let (_, act) = npy::read::<f32>(&d.join("actions.npy")).unwrap();
    let mut pre = Preprocessor::new((shape[2], shape[1]), (32, 32), [0.5; 3], [0.25; 3]).unwrap();
    let fl = shape[1] * shape[2] * 3;
    let mut last = -1;
    let mut right = 0;
    for k in 0..shape[0] {
        if ep[k] != last {
            chain.reset();
            chain.set_instruction(ins[k] as usize);
            last = ep[k];
        }
        pre.run(&frames[k * fl..(k + 1) * fl], chain.image_mut())
            .unwrap();
        chain.step(ExitPolicy::Fixed(3)).unwrap();
        let a = chain.action();
        if (a[0] - act[2 * k]).abs() <= 0.1 && (a[1] - act[2 * k + 1]).abs() <= 0.35 {
            right += 1;
        }
    }
    println!("right {}", right as f64 / shape[0] as f64);
}
