//! A flight record as MCAP, the container robotics tools read (Foxglove,
//! `mcap` CLI, ROS 2 bags): one JSON message per frame on `/offramp/frame`,
//! with a JSON schema, logged at the frame's time.

use offramp_runtime::exit_chain::MAX_EXITS;
use offramp_runtime::recorder::{
    Record, FLAG_DEADLINE_CUT, FLAG_DEADLINE_MISSED, FLAG_FALLBACK, FLAG_NONFINITE, FLAG_REMOTE,
    FLAG_STOPPED,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const TOPIC: &str = "/offramp/frame";
pub const SCHEMA_NAME: &str = "offramp.Frame";

/// One frame as the MCAP message carries it.
#[derive(Serialize)]
pub struct FrameMsg {
    pub frame: u64,
    /// ns since the recorder started.
    pub time_ns: u64,
    /// 1-based, as the CLI shows exits.
    pub exit: u8,
    pub exits_run: u8,
    pub latency_ms: f32,
    /// Per exit run: the criterion's delta (null where not computed) and
    /// its latency.
    pub deltas: Vec<Option<f32>>,
    pub exit_latency_ms: Vec<f32>,
    /// (v, ω) and the other action dims as recorded.
    pub action: Vec<f32>,
    pub nonfinite: bool,
    pub stopped: bool,
    pub deadline_cut: bool,
    pub deadline_missed: bool,
    pub remote: bool,
    pub fallback: bool,
    /// A cache head's entries after the frame, and those it evicted.
    pub cache_entries: u16,
    pub cache_evicted: u16,
}

impl FrameMsg {
    pub fn of(r: &Record) -> Self {
        let ran = (r.ran as usize).min(MAX_EXITS);
        Self {
            frame: r.frame,
            time_ns: r.time_ns,
            exit: r.exit + 1,
            exits_run: r.ran,
            latency_ms: r.latency_us / 1e3,
            deltas: r.deltas[..ran]
                .iter()
                .map(|d| d.is_finite().then_some(*d))
                .collect(),
            exit_latency_ms: r.exit_latency_us[..ran].iter().map(|l| l / 1e3).collect(),
            action: r.action.to_vec(),
            nonfinite: r.flags & FLAG_NONFINITE != 0,
            stopped: r.flags & FLAG_STOPPED != 0,
            deadline_cut: r.flags & FLAG_DEADLINE_CUT != 0,
            deadline_missed: r.flags & FLAG_DEADLINE_MISSED != 0,
            remote: r.flags & FLAG_REMOTE != 0,
            fallback: r.flags & FLAG_FALLBACK != 0,
            cache_entries: r.cache_entries,
            cache_evicted: r.cache_evicted,
        }
    }
}

const SCHEMA: &str = r#"{
  "title": "offramp.Frame",
  "description": "One frame of the offramp runtime: the exit it stopped at, the criterion's deltas, latencies and the action",
  "type": "object",
  "properties": {
    "frame": {"type": "integer"},
    "time_ns": {"type": "integer", "description": "ns since the recorder started"},
    "exit": {"type": "integer", "description": "exit taken, 1-based"},
    "exits_run": {"type": "integer"},
    "latency_ms": {"type": "number"},
    "deltas": {"type": "array", "items": {"type": ["number", "null"]}},
    "exit_latency_ms": {"type": "array", "items": {"type": "number"}},
    "action": {"type": "array", "items": {"type": "number"}},
    "nonfinite": {"type": "boolean"},
    "stopped": {"type": "boolean"},
    "deadline_cut": {"type": "boolean"},
    "deadline_missed": {"type": "boolean"},
    "remote": {"type": "boolean"},
    "fallback": {"type": "boolean"},
    "cache_entries": {"type": "integer", "description": "a cache head's entries after the frame"},
    "cache_evicted": {"type": "integer", "description": "entries the frame's commit evicted"}
  }
}"#;

/// Writes `records` to `path` as MCAP.
pub fn write(records: &[Record], path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let ctx = || format!("writing MCAP to {}", path.display());
    let mut w = ::mcap::Writer::new(std::io::BufWriter::new(file)).with_context(ctx)?;
    let schema = w
        .add_schema(SCHEMA_NAME, "jsonschema", SCHEMA.as_bytes())
        .with_context(ctx)?;
    let channel = w
        .add_channel(schema, TOPIC, "json", &BTreeMap::new())
        .with_context(ctx)?;
    for (seq, r) in records.iter().enumerate() {
        let data = serde_json::to_vec(&FrameMsg::of(r))?;
        w.write_to_known_channel(
            &::mcap::records::MessageHeader {
                channel_id: channel,
                sequence: seq as u32,
                log_time: r.time_ns,
                publish_time: r.time_ns,
            },
            &data,
        )
        .with_context(ctx)?;
    }
    w.finish().with_context(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use offramp_runtime::recorder::ACTION_DIMS;

    #[test]
    fn frames_read_back_in_order_with_their_schema() {
        let record = |frame: u64| {
            let mut deltas = [f32::NAN; MAX_EXITS];
            deltas[0] = 0.25;
            Record {
                frame,
                time_ns: 1_000 * frame,
                exit: 1,
                ran: 2,
                flags: FLAG_DEADLINE_CUT,
                latency_us: 1500.0,
                deltas,
                exit_latency_us: [500.0; MAX_EXITS],
                action: [0.5; ACTION_DIMS],
                cache_entries: 9,
                cache_evicted: 1,
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flight.mcap");
        write(&[record(7), record(8)], &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let msgs: Vec<_> = ::mcap::MessageStream::new(&bytes)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].channel.topic, TOPIC);
        let schema = msgs[0].channel.schema.as_ref().unwrap();
        assert_eq!(schema.name, SCHEMA_NAME);
        let v: serde_json::Value = serde_json::from_slice(&msgs[1].data).unwrap();
        assert_eq!(v["frame"], 8);
        assert_eq!(v["exit"], 2, "1-based");
        assert_eq!(v["deltas"], serde_json::json!([0.25, null]));
        assert_eq!(v["exit_latency_ms"], serde_json::json!([0.5, 0.5]));
        assert_eq!(v["deadline_cut"], true);
        assert_eq!(
            (&v["cache_entries"], &v["cache_evicted"]),
            (&9.into(), &1.into())
        );
        assert_eq!(msgs[1].log_time, 8_000);
    }
}
