"""The source description `offramp build --onnx` reads (`model.toml`),
written in one place for every script that exports a multi-exit model
(tools/onnx/make_tiny_model.py, tools/train/train_demo.py,
tools/train/train_exit_heads.py). docs/model-format.md says what each field
means."""

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

# The recurrent head every offramp export uses: the deepest feature and the
# state in, the action and the next state out.
HEAD = {
    "artifact": "head.onnx",
    "feature_input": "feature",
    "state_input": "h_in",
    "state_output": "h_out",
    "action_output": "action",
}

# What [preprocess] does, said in the file for whoever reads it.
PREPROCESS_COMMENT = "x / 255 -> (x - mean) / std per channel, HWC RGB -> NCHW"


def value(v):
    """A TOML value: strings quoted, lists of numbers or strings."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return repr(v)


def section(name, entries, comments=()):
    """`[name]`, its comment lines, then `key = value` lines (a str entry is
    written as it is: a comment or a preformatted line)."""
    lines = [f"[{name}]"] + [f"# {c}" for c in comments]
    for e in entries:
        lines.append(e if isinstance(e, str) else f"{e[0]} = {value(e[1])}")
    return "\n".join(lines) + "\n"


def render(
    model,
    exits,
    criterion,
    *,
    comment=("Source description read by `offramp build --onnx`.",),
    feature="feature",
    confidence_output=None,
    preprocess=None,
    preprocess_comment=True,
    head=HEAD,
):
    """The whole file. `criterion` is a list of entries for [criterion]
    (`(key, value)` pairs or comment lines starting with '#');
    `preprocess` a dict (mean, std, instruction) or None."""
    top = [f"# {c}" for c in comment]
    top += [f"model = {value(model)}", f"exits = {value(list(exits))}", f"feature = {value(feature)}"]
    if confidence_output is not None:
        top.append(f"confidence_output = {value(confidence_output)}")
    parts = ["\n".join(top) + "\n"]
    if preprocess is not None:
        comments = (PREPROCESS_COMMENT,) if preprocess_comment else ()
        parts.append(section("preprocess", list(preprocess.items()), comments))
    parts.append(section("head", list(head.items())))
    parts.append(section("criterion", criterion))
    return "\n".join(parts)


def load(path):
    """A model.toml read back: its fields, and its leading comment lines."""
    if tomllib is None:
        raise SystemExit("reading model.toml needs Python 3.11 or newer (tomllib)")
    with open(path, "rb") as f:
        raw = f.read()
    comment = []
    for line in raw.decode().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line[1:].strip())
    return tomllib.loads(raw.decode()), comment
