//! Token-id instructions: `instruction_texts` tokenized with the model's
//! own `tokenizer.json` (the tokenizers crate, pure Rust) into the
//! `instruction_ids` the manifest carries.

use crate::analyze::analyze;
use crate::invalid;
use offramp_engines::manifest::Preprocess;
use offramp_engines::Result;
use std::path::Path;

/// Turns `instruction_texts` into `instruction_ids` with the model's
/// `tokenizer.json`, padded to the instruction input's length L (read from
/// `first_segment`) with the tokenizer's pad id (0 if it sets none). A text
/// longer than L is refused: cutting an instruction short changes what it
/// says.
pub(super) fn tokenize_instructions(
    dir: &Path,
    source_path: &Path,
    p: &mut Preprocess,
    first_segment: &Path,
) -> Result<()> {
    let Some(file) = p.tokenizer.take() else {
        if !p.instruction_texts.is_empty() && p.instruction_ids.is_empty() {
            return Err(invalid(
                source_path,
                "preprocess.tokenizer",
                "instruction_texts need the tokenizer.json that turns them into ids",
            ));
        }
        return Ok(());
    };
    if !p.instruction_ids.is_empty() {
        return Err(invalid(
            source_path,
            "preprocess.instruction_ids",
            "give the ids or a tokenizer with instruction_texts, not both",
        ));
    }
    if p.instruction_texts.is_empty() {
        return Err(invalid(
            source_path,
            "preprocess.instruction_texts",
            "a tokenizer needs the instruction texts to tokenize, instruction 0 first",
        ));
    }
    let name = p.instruction.as_deref().unwrap_or_default();
    let inputs = analyze(first_segment)?.inputs;
    let Some(len) = inputs
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| match t.shape.as_slice() {
            [1, l] => Some(*l),
            _ => None,
        })
    else {
        return Err(invalid(
            source_path,
            "preprocess.instruction",
            format!("{name:?} is not a [1, L] input of segment 0, for the token ids"),
        ));
    };
    let path = dir.join(&file);
    let tok = tokenizers::Tokenizer::from_file(&path).map_err(|e| {
        invalid(
            source_path,
            "preprocess.tokenizer",
            format!("{}: not a readable tokenizer.json: {e}", path.display()),
        )
    })?;
    let pad = tok.get_padding().map_or(0, |pp| i64::from(pp.pad_id));
    let mut ids = Vec::with_capacity(p.instruction_texts.len());
    for (k, text) in p.instruction_texts.iter().enumerate() {
        // With the special tokens (BOS, CLS, EOS) the tokenizer's post-
        // processor adds: what `tokenizer(text)` gives in Python, and so
        // what the model was trained on.
        let enc = tok.encode(text.as_str(), true).map_err(|e| {
            invalid(
                source_path,
                &format!("preprocess.instruction_texts[{k}]"),
                format!("{text:?}: {e}"),
            )
        })?;
        // Without padding or truncation the ids are the text's own.
        let own: Vec<i64> = enc
            .get_ids()
            .iter()
            .zip(enc.get_attention_mask())
            .filter(|(_, m)| **m == 1)
            .map(|(id, _)| i64::from(*id))
            .collect();
        if own.len() > len || !enc.get_overflowing().is_empty() {
            return Err(invalid(
                source_path,
                &format!("preprocess.instruction_texts[{k}]"),
                format!(
                    "{text:?} is {} tokens or more; {name:?} takes {len}",
                    own.len().max(len + 1)
                ),
            ));
        }
        let mut row = own;
        row.resize(len, pad);
        ids.push(row);
    }
    p.instruction_ids = ids;
    Ok(())
}
