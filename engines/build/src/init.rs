//! `offramp init`: a draft `model.toml` read off the graphs as exported.
//!
//! Given a directory of per-segment exports, it orders the segments (the
//! one that takes the image first, then each whose inputs the previous
//! one's outputs provide), matches each segment's inputs to the previous
//! segment's outputs (by name, else by shape and dtype, else by position
//! among tensors of one shape), finds a shared head (a graph outside the
//! chain that takes every exit's feature, and a state it returns), each
//! exit's action (the output shape every segment emits) and confidence (one
//! value per exit), the image inputs and the instruction. Given one full
//! export, it guesses the exit outputs the same way, splits it
//! ([`crate::split`]) and drafts from the segments. Every guess is reported,
//! with what only the user knows (normalisation, the instruction
//! vocabulary, token bins) listed to confirm.

use crate::builder::prepare::read_specs;
use crate::split::{split, SplitOptions};
use crate::{invalid, io};
use offramp_engines::manifest::{DType, TensorSpec};
use offramp_engines::Result;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What to draft.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// A directory of per-segment exports, or one full export.
    pub onnx: PathBuf,
    /// Where model.toml goes (with the ONNX files copied or split there);
    /// default: beside the exports (a directory), or `<stem>-segments`
    /// beside a full export.
    pub out: Option<PathBuf>,
}

/// The draft and what it rests on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Draft {
    pub model_toml: PathBuf,
    /// What was read off the graphs.
    pub guessed: Vec<String>,
    /// What only the user knows: check these in model.toml before building.
    pub confirm: Vec<String>,
}

struct Onnx {
    file: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl Onnx {
    /// As a shared head: its state input and output (a second input of
    /// the shape of an output: recurrent) and its action output.
    fn head_tensors(
        &self,
    ) -> (
        Option<&TensorSpec>,
        Option<&TensorSpec>,
        Option<&TensorSpec>,
    ) {
        let state = self.inputs.get(1).filter(|s| {
            !s.name.starts_with("past_key_values.")
                && !s.name.to_lowercase().contains("mask")
                && self.outputs.iter().any(|o| same(o, s))
        });
        let state_out = state.and_then(|s| self.outputs.iter().find(|o| same(o, s)));
        let cache = self.cache_outputs();
        let action = self.outputs.iter().find(|o| {
            Some(&o.name) != state_out.map(|s| &s.name) && !cache.contains(&o.name.as_str())
        });
        (state, state_out, action)
    }

    /// The tensors of a key/value cache in the Hugging Face convention
    /// (`past_key_values.{l}.key` / `.value` in, `present.{l}.key` /
    /// `.value` out), with the inputs named `*mask*` and `*position*` and
    /// the output named `*attention*` / `*attn*`: a `[head.cache]` draft,
    /// its sizes to confirm. `None` without `past_key_values.0.key`.
    fn cache_draft(&self, confirm: &mut Vec<String>) -> Option<String> {
        let layer_names = |side: &[TensorSpec], prefix: &str, kv: &str| -> Vec<String> {
            (0..)
                .map(|l| format!("{prefix}.{l}.{kv}"))
                .take_while(|n| side.iter().any(|t| &t.name == n))
                .collect()
        };
        let past_keys = layer_names(&self.inputs, "past_key_values", "key");
        let first = self
            .inputs
            .iter()
            .find(|t| Some(&t.name) == past_keys.first())?;
        let slots = *first.shape.iter().rev().nth(1)?;
        let find = |side: &[TensorSpec], words: &[&str]| {
            side.iter()
                .find(|t| words.iter().any(|w| t.name.to_lowercase().contains(w)))
                .map_or(String::new(), |t| t.name.clone())
        };
        let list = |v: Vec<String>| format!("{v:?}");
        let sinks = (slots / 8).clamp(1, 4).min(slots.saturating_sub(1));
        let saddles = (slots - sinks) / 3;
        let mut t = format!(
            "\n[head.cache]\npast_keys = {}\npast_values = {}\npresent_keys = {}\npresent_values = {}\nmask = {:?}\n",
            list(past_keys),
            list(layer_names(&self.inputs, "past_key_values", "value")),
            list(layer_names(&self.outputs, "present", "key")),
            list(layer_names(&self.outputs, "present", "value")),
            find(&self.inputs, &["mask"]),
        );
        let positions = find(&self.inputs, &["position"]);
        if !positions.is_empty() {
            t += &format!("positions = {positions:?}\n");
        }
        t += &format!(
            "attention = {:?}\nsinks = {sinks}                           # confirm: sinks + saddles + recent = {slots}\nsaddles = {saddles}\nrecent = {}\n",
            find(&self.outputs, &["attention", "attn"]),
            slots - sinks - saddles
        );
        confirm.push(format!(
            "head.cache: {slots} slots drafted as {sinks} sinks, {saddles} saddles, {} recent; use the split the head was trained with",
            slots - sinks - saddles
        ));
        Some(t)
    }

    /// The outputs a cache head returns beside its action.
    fn cache_outputs(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| {
                let lower = n.to_lowercase();
                n.starts_with("present.") || lower.contains("attention") || lower.contains("attn")
            })
            .collect()
    }
}

fn same(a: &TensorSpec, b: &TensorSpec) -> bool {
    a.shape == b.shape && a.dtype == b.dtype
}

fn is_image(t: &TensorSpec) -> bool {
    t.dtype == DType::F32
        && match t.shape.as_slice() {
            [1, 3, h, w] | [3, h, w] => *h > 1 && *w > 1,
            _ => false,
        }
}

/// Drafts `model.toml` (see the module doc).
pub fn init(opts: &InitOptions) -> Result<Draft> {
    let path = &opts.onnx;
    if path.is_dir() {
        let out = opts.out.clone().unwrap_or_else(|| path.clone());
        let existing = out.join("model.toml");
        if existing.exists() {
            return Err(invalid(
                &existing,
                "model.toml",
                "already exists: init drafts a new one; move it aside or give --out another directory",
            ));
        }
        let model = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        return draft_dir(
            path,
            &out,
            model.unwrap_or_else(|| "model".into()),
            Vec::new(),
        );
    }
    let stem = path
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| path.with_file_name(format!("{stem}-segments")));
    let (_, outputs, _) = read_specs(path)?;
    let (actions, confidences) = exit_outputs(path, &outputs)?;
    let mut confirm = Vec::new();
    let mut guessed = vec![format!(
        "{}: exits {} (outputs of one shape, in the order the export lists them){}",
        path.display(),
        actions.join(", "),
        if confidences.is_empty() {
            String::new()
        } else {
            format!(", confidences {}", confidences.join(", "))
        }
    )];
    // A shared head beside the export: another graph that takes the exits'
    // output (the feature) first.
    let feature = outputs.iter().find(|t| t.name == actions[0]).cloned();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut heads = Vec::new();
    for g in read_dir(dir)? {
        if Some(g.file.as_str()) != path.file_name().and_then(|n| n.to_str())
            && feature
                .as_ref()
                .zip(g.inputs.first())
                .is_some_and(|(f, i)| same(f, i))
        {
            heads.push(g);
        }
    }
    let with = out.join(format!(".{stem}.with-{}.toml", std::process::id()));
    if let Some(h) = heads.first() {
        guessed.push(format!(
            "{}: the shared head (its first input takes the exit outputs)",
            h.file
        ));
        if heads.len() > 1 {
            confirm.push(format!(
                "head: {} graphs take the exit outputs ({}); drafted with {}",
                heads.len(),
                heads
                    .iter()
                    .map(|h| h.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                h.file
            ));
        }
        let (state, state_out, action) = h.head_tensors();
        let mut t = format!(
            "[head]\nartifact = {:?}\nfeature_input = {:?}\n",
            h.file, h.inputs[0].name
        );
        if let (Some(s), Some(o)) = (state, state_out) {
            t += &format!("state_input = {:?}\nstate_output = {:?}\n", s.name, o.name);
        }
        t += &format!(
            "action_output = {:?}\n",
            action.map_or("", |a| a.name.as_str())
        );
        t += &h.cache_draft(&mut confirm).unwrap_or_default();
        std::fs::create_dir_all(&out).map_err(io(&out))?;
        std::fs::write(&with, t).map_err(io(&with))?;
    }
    let report = split(&SplitOptions {
        onnx: path.clone(),
        exit_outputs: actions,
        confidence_outputs: confidences,
        cuts: Vec::new(),
        head: heads.first().map(|h| dir.join(&h.file)),
        with: heads.first().map(|_| with.clone()),
        out: out.clone(),
        tolerance: 1e-5,
    });
    let _ = std::fs::remove_file(&with);
    let report = report?;
    let worst = report.max_abs_diff.iter().copied().fold(0.0, f32::max);
    guessed.push(format!(
        "split into {} segments in {} (chain against the full model: max |diff| {worst:.1e})",
        report.segments.len(),
        out.display()
    ));
    let mut draft = draft_dir(&out, &out, stem, guessed)?;
    draft.confirm.extend(confirm);
    Ok(draft)
}

/// The exit outputs of a full export: the largest group of outputs of one
/// shape (actions, logits or features), and one-value outputs, one per exit
/// or one per exit but the last (confidences).
fn exit_outputs(path: &Path, outputs: &[TensorSpec]) -> Result<(Vec<String>, Vec<String>)> {
    let mut groups: Vec<(Vec<usize>, Vec<String>)> = Vec::new();
    for t in outputs {
        match groups.iter_mut().find(|(s, _)| *s == t.shape) {
            Some((_, g)) => g.push(t.name.clone()),
            None => groups.push((t.shape.clone(), vec![t.name.clone()])),
        }
    }
    let wide = |s: &[usize]| s.iter().product::<usize>() > 1;
    let Some((_, actions)) = groups
        .iter()
        .filter(|(s, g)| wide(s) && g.len() >= 2)
        .max_by_key(|(_, g)| g.len())
    else {
        return Err(invalid(
            path,
            "outputs",
            format!(
                "no two outputs share a shape, so the exits cannot be told; export every exit's action (or feature) as a graph output, or run `offramp split --exit-outputs` (its outputs: {})",
                outputs.iter().map(|t| format!("{:?} {:?}", t.name, t.shape)).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let n = actions.len();
    let confidences = groups
        .iter()
        .find(|(s, g)| !wide(s) && (g.len() == n || g.len() + 1 == n))
        .map(|(_, g)| g.clone())
        .unwrap_or_default();
    Ok((actions.clone(), confidences))
}

/// Reads every `.onnx` file of `dir`.
fn read_dir(dir: &Path) -> Result<Vec<Onnx>> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".onnx") && !n.starts_with('.'))
        .collect();
    files.sort_by_key(|f| natural(f));
    files
        .into_iter()
        .map(|file| {
            let (inputs, outputs, _) = read_specs(&dir.join(&file))?;
            Ok(Onnx {
                file,
                inputs,
                outputs,
            })
        })
        .collect()
}

/// Sorts `block10` after `block9`.
fn natural(s: &str) -> (String, u64) {
    let digits: String = s
        .trim_end_matches(".onnx")
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let n = digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0);
    (
        s.trim_end_matches(".onnx")[..s.len() - 5 - digits.len()].to_string(),
        n,
    )
}

/// `inputs` of a segment matched to `outputs` of the one before: by name,
/// then by shape and dtype in order. `None` if one finds no match.
fn match_inputs(
    inputs: &[TensorSpec],
    outputs: &[TensorSpec],
) -> Option<(Vec<(String, String)>, bool)> {
    let mut used = vec![false; outputs.len()];
    let mut pairs = vec![None; inputs.len()];
    for (k, t) in inputs.iter().enumerate() {
        if let Some(j) = outputs.iter().position(|o| o.name == t.name && same(o, t)) {
            used[j] = true;
            pairs[k] = Some(j);
        }
    }
    let mut by_position = false;
    for (k, t) in inputs.iter().enumerate() {
        if pairs[k].is_some() {
            continue;
        }
        let fits: Vec<usize> = (0..outputs.len())
            .filter(|&j| !used[j] && same(&outputs[j], t))
            .collect();
        let &j = fits.first()?;
        by_position |= fits.len() > 1;
        used[j] = true;
        pairs[k] = Some(j);
    }
    let pairs = inputs
        .iter()
        .zip(pairs)
        .filter_map(|(t, j)| j.map(|j| (t.name.clone(), outputs[j].name.clone())))
        .collect();
    Some((pairs, by_position))
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn draft_dir(dir: &Path, out: &Path, model: String, mut guessed: Vec<String>) -> Result<Draft> {
    let mut graphs = read_dir(dir)?;
    let mut confirm = Vec::new();
    let first = graphs
        .iter()
        .position(|g| g.inputs.iter().any(is_image))
        .ok_or_else(|| {
            invalid(
                dir,
                "onnx",
                "no ONNX file here takes an image ([1, 3, H, W] or [3, H, W] f32): which is segment 0?",
            )
        })?;
    let mut chain = vec![graphs.remove(first)];
    let mut maps: Vec<Vec<(String, String)>> = vec![Vec::new()];
    loop {
        let prev = &chain[chain.len() - 1];
        // Of the graphs the previous one feeds, the one reading the most
        // (a segment reads the hidden tokens, a head only a feature).
        let next = graphs
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.inputs.iter().any(is_image) && g.inputs.len() < prev.outputs.len())
            .filter_map(|(k, g)| match_inputs(&g.inputs, &prev.outputs).map(|m| (k, m)))
            .max_by_key(|(k, _)| {
                let read: usize = graphs[*k].inputs.iter().map(TensorSpec::elements).sum();
                (read, std::cmp::Reverse(*k))
            });
        let Some((k, (pairs, by_position))) = next else {
            break;
        };
        let g = graphs.remove(k);
        let i = chain.len();
        let renamed: Vec<(String, String)> = pairs.into_iter().filter(|(a, b)| a != b).collect();
        for (input, output) in &renamed {
            guessed.push(format!(
                "exits[{i}] ({}): input {input:?} reads {output:?} of {}",
                g.file, prev.file
            ));
        }
        if by_position {
            confirm.push(format!(
                "exits[{i}].inputs: several of {}'s outputs have the shape of {}'s inputs; matched in order",
                prev.file, g.file
            ));
        }
        maps.push(renamed);
        chain.push(g);
    }
    let n = chain.len();
    // What each segment hands to no later segment: its exit outputs.
    let exit_outs: Vec<Vec<&TensorSpec>> = (0..n)
        .map(|i| {
            chain[i]
                .outputs
                .iter()
                .filter(|o| {
                    i + 1 == n
                        || !chain[i + 1].inputs.iter().any(|t| {
                            maps[i + 1]
                                .iter()
                                .find(|(a, _)| *a == t.name)
                                .map_or(t.name == o.name, |(_, b)| *b == o.name)
                        })
                })
                .collect()
        })
        .collect();
    // A shared head: a graph left over whose first input every exit emits.
    let head = graphs.iter().find(|h| {
        h.inputs
            .first()
            .is_some_and(|f| exit_outs.iter().all(|outs| outs.iter().any(|o| same(o, f))))
    });
    let wide = |t: &TensorSpec| t.elements() > 1;
    // The action (or feature) shape: one every exit emits.
    let shape = match head {
        Some(h) => h.inputs[0].clone(),
        None => exit_outs[n - 1]
            .iter()
            .copied()
            .find(|t| wide(t) && exit_outs.iter().all(|o| o.iter().any(|x| same(x, t))))
            .cloned()
            .ok_or_else(|| {
                invalid(
                    dir,
                    "onnx",
                    format!(
                        "no output shape is emitted by every segment of the chain {}: which output is each exit's action?",
                        chain.iter().map(|g| g.file.as_str()).collect::<Vec<_>>().join(" -> ")
                    ),
                )
            })?,
    };
    let action: Vec<String> = exit_outs
        .iter()
        .map(|o| {
            o.iter()
                .find(|t| same(t, &shape))
                .map(|t| t.name.clone())
                .unwrap_or_default()
        })
        .collect();
    let one = |o: &Vec<&TensorSpec>| o.iter().find(|t| t.elements() == 1).map(|t| t.name.clone());
    let confidence: Vec<Option<String>> = exit_outs.iter().map(one).collect();
    let learned = head.is_none() && confidence[..n - 1].iter().all(Option::is_some) && n > 1;
    let reference = exit_outs[0]
        .iter()
        .find(|t| same(t, &shape) && t.name != action[0])
        .map(|t| t.name.clone());

    // The model inputs: images, and the instruction.
    let seg0 = &chain[0];
    let images: Vec<&TensorSpec> = seg0.inputs.iter().filter(|t| is_image(t)).collect();
    let instruction = seg0.inputs.iter().find(|t| !is_image(t));
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Drafted by `offramp init` from {}.\n# Check the lines marked `confirm`, then: offramp build --onnx {} --out SET",
        dir.display(),
        out.display()
    );
    let _ = writeln!(text, "model = {model:?}");
    let shared = |v: &[String]| v.iter().all(|a| *a == v[0]);
    let role = if head.is_some() { "feature" } else { "action" };
    let top_action = shared(&action);
    let confidences: Vec<String> = confidence[..n - 1].iter().flatten().cloned().collect();
    let top_conf = learned && shared(&confidences);
    let exit_tables = !top_action || (learned && !top_conf) || maps.iter().any(|m| !m.is_empty());
    if !exit_tables {
        let files: Vec<String> = chain.iter().map(|g| g.file.clone()).collect();
        let _ = writeln!(text, "exits = [{}]", quoted(&files));
    }
    if top_action {
        let key = if head.is_some() {
            "feature"
        } else {
            "action_output"
        };
        let _ = writeln!(text, "{key} = {:?}", action[0]);
    }
    if top_conf {
        let _ = writeln!(text, "confidence_output = {:?}", confidences[0]);
    }
    if exit_tables {
        for (i, g) in chain.iter().enumerate() {
            let _ = writeln!(text, "\n[[exits]]\nfile = {:?}", g.file);
            if !top_action {
                let _ = writeln!(text, "{role} = {:?}", action[i]);
            }
            if let (true, false, Some(c)) = (learned, top_conf, &confidence[i]) {
                let _ = writeln!(text, "confidence = {c:?}");
            }
            if !maps[i].is_empty() {
                let pairs: Vec<String> = maps[i]
                    .iter()
                    .map(|(a, b)| format!("{a} = {b:?}"))
                    .collect();
                let _ = writeln!(text, "inputs = {{ {} }}", pairs.join(", "));
            }
        }
    }
    guessed.push(format!(
        "exits in order: {}",
        chain
            .iter()
            .map(|g| g.file.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    ));
    guessed.push(format!("each exit's {role}: {}", action.join(", ")));
    if learned {
        guessed.push(format!(
            "each exit's confidence (learned criterion): {}",
            confidences.join(", ")
        ));
    }

    let _ = writeln!(text, "\n[preprocess]");
    let imagenet = "mean = [0.485, 0.456, 0.406]          # confirm: your training's normalisation\nstd = [0.229, 0.224, 0.225]";
    if images.len() == 1 && seg0.inputs.first().is_some_and(is_image) {
        let _ = writeln!(text, "{imagenet}");
    }
    if let Some(t) = instruction {
        let _ = writeln!(text, "instruction = {:?}", t.name);
        let len = t.shape.last().copied().unwrap_or(1);
        match t.dtype {
            DType::I64 => {
                let ids: Vec<String> = (0..4)
                    .map(|k| {
                        let mut row = vec![0; len];
                        row[0] = k;
                        format!("{row:?}")
                    })
                    .collect();
                let _ = writeln!(
                    text,
                    "# confirm: the token ids of instructions 0-3 (or tokenizer = \"tokenizer.json\"\n# with instruction_texts = [...])\ninstruction_ids = [{}]",
                    ids.join(", ")
                );
                confirm.push(format!("preprocess.instruction_ids: {:?} takes token ids; the draft gives instruction k the id k", t.name));
            }
            DType::F32 => guessed.push(format!(
                "instruction {:?}: one-hot over {len} instructions",
                t.name
            )),
        }
    }
    if images.len() > 1 || !seg0.inputs.first().is_some_and(is_image) {
        for t in &images {
            let _ = writeln!(
                text,
                "\n[[preprocess.images]]\ninput = {:?}\n{imagenet}",
                t.name
            );
        }
    }
    confirm.push("preprocess mean/std: drafted as ImageNet's; use your training's".into());

    if let Some(h) = head {
        let (state, state_out, act) = h.head_tensors();
        let _ = writeln!(
            text,
            "\n[head]\nartifact = {:?}\nfeature_input = {:?}",
            h.file, h.inputs[0].name
        );
        if let (Some(s), Some(o)) = (state, state_out) {
            let _ = writeln!(
                text,
                "state_input = {:?}\nstate_output = {:?}",
                s.name, o.name
            );
        }
        if let Some(a) = act {
            let _ = writeln!(text, "action_output = {:?}", a.name);
        }
        let cache = h.cache_draft(&mut confirm);
        text += cache.as_deref().unwrap_or_default();
        guessed.push(format!(
            "{}: the shared head ({})",
            h.file,
            match (cache.is_some(), state.is_some()) {
                (true, _) => "temporal attention over a key/value cache",
                (false, true) => "recurrent",
                (false, false) => "stateless",
            }
        ));
    }
    // The action each exit hands on.
    let act_shape = match head {
        Some(h) => h.head_tensors().2.map(|t| t.shape.clone()),
        None => Some(shape.shape.clone()),
    };
    let tokens = matches!(act_shape.as_deref(), Some([1, d, b]) if *d >= 1 && *b >= 2);
    if let (true, Some([_, d, b])) = (tokens, act_shape.as_deref()) {
        let centres: Vec<String> = (0..*b)
            .map(|k| format!("{:.4}", -1.0 + 2.0 * k as f64 / (*b as f64 - 1.0)))
            .collect();
        let rows = vec![format!("[{}]", centres.join(", ")); *d];
        let _ = writeln!(
            text,
            "\n[action]\nkind = \"tokens\"\nscores = \"logits\"             # confirm: or \"probabilities\"\n# confirm: each dimension's bin centres\nbins = [{}]",
            rows.join(",\n        ")
        );
        guessed.push(format!("actions are tokens: {d} dimensions of {b} bins"));
        confirm.push(
            "action.bins: drafted evenly over [-1, 1]; use the centres your model was trained on"
                .into(),
        );
    }
    let _ = writeln!(text, "\n[criterion]");
    if learned {
        let _ = writeln!(text, "kind = \"learned\"");
    } else if tokens {
        let _ = writeln!(text, "kind = \"margin\"");
    } else {
        let dims: Vec<usize> = (0..act_shape.map_or(0, |s| s.iter().product())).collect();
        let _ = writeln!(text, "kind = \"action-consistency\"\ncontinuous_dims = {dims:?}    # confirm: drop binary dims (a gripper)");
    }
    if let Some(r) = reference {
        let _ = writeln!(text, "exit0_reference = {r:?}");
        guessed.push(format!("{r:?}: exit 0's reference (DeeR)"));
    }

    std::fs::create_dir_all(out).map_err(io(out))?;
    if dir.canonicalize().ok() != out.canonicalize().ok() {
        for g in chain.iter().chain(head) {
            let (src, dst) = (dir.join(&g.file), out.join(&g.file));
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    let path = out.join("model.toml");
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(Draft {
        model_toml: path,
        guessed,
        confirm,
    })
}
