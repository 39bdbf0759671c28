#!/usr/bin/env python3
"""Trains offramp's demo multi-exit VLA on simulator demonstrations and
exports one ONNX file per exit segment plus the shared action head.

tools/train/reproduce_demo.sh trains the demo model with it (CPU, PyTorch from
PyPI; BC then DAgger rounds, about 66 minutes on 2 cores; how closely that
reproduces the committed engines/models/demo/: docs/demo-model.md); one pass
of this script is one of its steps:

    cargo run --release -p offramp -- sim record --episodes 1000 --first-seed 100000 --out /tmp/offramp-train
    python3 tools/train/train_demo.py --data /tmp/offramp-train --out /tmp/model-1 --epochs 12 --widths 24,48,48,48

The model is DeeR-shaped:
* segment 0: the 32x32 image cut into 32 patches (8 rows x 4 columns each,
  so the horizontal bearing keeps 8 columns), plus one instruction token
  (the one-hot landmark colour), then 2 pre-norm transformer blocks;
* segments 1-3: 2 more blocks each (8 in all, an exit every 2 blocks);
* every segment emits its token states (`hidden<i>`, read by the next
  segment) and a pooled feature (`feature`: mean of the tokens -> LayerNorm
  -> a per-exit linear), read by
* ONE recurrent head shared by all exits: a GRU cell whose state carries
  across frames (h_in -> h_out), and a linear map to (v m/s, omega rad/s).

Training is behaviour cloning on chunks of consecutive frames with DeeR's
recipe: at every time step the head is fed the feature of a randomly chosen
exit (so the recurrent state learns to accept any exit's feature), plus an
auxiliary loss for each exit driving the head on its own.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx"))
import model_toml  # noqa: E402

# D: the patch embedding's width, and every segment's unless --widths says
# otherwise. Each block's MLP is twice its width.
D, HEADS, FEAT, HIDDEN = 48, 4, 64, 64
H = W = 32
PATCH = (8, 4)
TOKENS = (H // PATCH[0]) * (W // PATCH[1]) + 1
N_INSTR, N_EXITS, BLOCKS_PER_EXIT = 4, 4, 2
# Physical scale of the action outputs: the expert's limits.
ACTION_SCALE = (0.5, 2.0)
MEAN, STD = 0.5, 0.25  # x/255 -> (x - MEAN) / STD, per channel
OPSET = 17


class Block(nn.Module):
    def __init__(self, d=D):
        super().__init__()
        self.d = d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        b, t, _ = x.shape
        d = self.d
        dh = d // HEADS
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, dh).transpose(1, 2) for z in (q, k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5, dim=-1) @ v
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Exit(nn.Module):
    """Pools the tokens into the head's feature."""

    def __init__(self, d=D):
        super().__init__()
        self.ln, self.fc = nn.LayerNorm(d), nn.Linear(d, FEAT)

    def forward(self, x):
        return self.fc(self.ln(x.mean(dim=1)))


class Segment(nn.Module):
    """One exit segment. With equal widths (the default) the hidden state is
    the token stream itself. With narrower segments (`--widths`, e.g.
    32,48,48,48) each hidden state up to the last narrow segment also carries
    the D-channel patch embedding, and a segment whose input is not its own
    width starts with a linear `lift` of it: a narrow first segment then
    cannot starve the wider ones of the image (a plain narrow-to-wide chain
    trained to 31 %)."""

    def __init__(self, index, widths):
        super().__init__()
        self.first = index == 0
        narrow = [i for i, w in enumerate(widths) if w < D]
        last_narrow = narrow[-1] if narrow else -1
        # Whether this segment's input and output carry the embedding.
        self.carry_in = not self.first and index - 1 <= last_narrow
        self.carry_out = index <= last_narrow
        d = widths[index]
        d_in = D if self.first else widths[index - 1] + (D if self.carry_in else 0)
        if self.first:
            self.patch = nn.Conv2d(3, D, kernel_size=PATCH, stride=PATCH)
            self.instr = nn.Linear(N_INSTR, D)
            self.pos = nn.Parameter(torch.randn(1, TOKENS, D) * 0.02)
            # DeeR's reference for exit 0's criterion: the head on the pooled
            # embedding, before any block.
            self.embed_exit = Exit()
        if d_in != d:
            self.lift = nn.Linear(d_in, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(BLOCKS_PER_EXIT))
        self.exit = Exit(d)

    def forward(self, *inputs):
        if self.first:
            image, instruction = inputs
            p = self.patch(image).flatten(2).transpose(1, 2)
            x = torch.cat([self.instr(instruction).unsqueeze(1), p], dim=1) + self.pos
            ref = self.embed_exit(x)
            embed = x
        else:
            (x,) = inputs
            embed = x[..., :D] if self.carry_in else None
        if hasattr(self, "lift"):
            x = self.lift(x)
        for blk in self.blocks:
            x = blk(x)
        hidden = torch.cat([embed, x], dim=-1) if self.carry_out else x
        if self.first:
            return hidden, self.exit(x), ref
        return hidden, self.exit(x)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRUCell(FEAT, HIDDEN)
        self.out = nn.Linear(HIDDEN, 2)
        self.register_buffer("scale", torch.tensor(ACTION_SCALE))

    def forward(self, feature, h_in):
        h = self.gru(feature, h_in)
        return self.out(h) * self.scale, h


class Model(nn.Module):
    def __init__(self, widths=(D,) * N_EXITS):
        super().__init__()
        self.segments = nn.ModuleList(Segment(i, widths) for i in range(N_EXITS))
        self.head = Head()

    def features(self, image, instruction):
        """The embedding's reference feature then all exits' features for a
        batch of frames: [1 + N_EXITS, B, FEAT]."""
        x, f, ref = self.segments[0](image, instruction)
        out = [ref, f]
        for seg in self.segments[1:]:
            x, f = seg(x)
            out.append(f)
        return torch.stack(out)


def load_onnx_weights(model, engines):
    """Loads the weights of an exported engine set (segment*.onnx, head.onnx)
    into `model`, so a DAgger round can start from committed engines without
    their PyTorch checkpoint. Named initializers map one to one; the linear
    layers inside blocks export as anonymous, transposed MatMul weights in
    module order (qkv, proj, fc1, fc2 per block)."""
    import onnx
    from onnx import numpy_helper

    state = model.state_dict()
    loaded = set()
    parts = [(f"segments.{i}.", f"segment{i}.onnx") for i in range(N_EXITS)] + [("head.", "head.onnx")]
    for prefix, file in parts:
        path = os.path.join(engines, file)
        inits = onnx.load(path).graph.initializer
        anon = [numpy_helper.to_array(t) for t in inits if t.name.startswith("onnx::")]
        lift = ["lift.weight"] if prefix != "head." and hasattr(model.get_submodule(prefix[:-1]), "lift") else []
        anon_names = lift + [
            f"blocks.{b}.{layer}.weight"
            for b in range(BLOCKS_PER_EXIT if prefix != "head." else 0)
            for layer in ("qkv", "proj", "fc1", "fc2")
        ]
        if len(anon) != len(anon_names):
            raise SystemExit(f"{path}: {len(anon)} anonymous weights, expected {len(anon_names)}")
        named = {t.name: numpy_helper.to_array(t) for t in inits if not t.name.startswith("onnx::")}
        named.update({n: a.T for n, a in zip(anon_names, anon)})
        for name, arr in named.items():
            key = prefix + name
            if key not in state:
                raise SystemExit(f"{path}: initializer {name} has no parameter {key} in the model")
            if tuple(state[key].shape) != arr.shape:
                raise SystemExit(f"{path}: {name} is {arr.shape}, the model's {key} is {tuple(state[key].shape)}")
            state[key] = torch.from_numpy(arr.copy())
            loaded.add(key)
    missing = sorted(set(state) - loaded)
    if missing:
        raise SystemExit(f"{engines}: no weights for {missing}")
    model.load_state_dict(state)


def load(dirs):
    """Concatenates recordings; episode indices stay unique across them."""
    parts = []
    offset = 0
    for data in dirs:
        frames = np.load(os.path.join(data, "frames.npy"))
        instr = np.load(os.path.join(data, "instructions.npy"))
        actions = np.load(os.path.join(data, "actions.npy")).astype(np.float32)
        episodes = np.load(os.path.join(data, "episodes.npy")).astype(np.int64) + offset
        assert frames.shape[1:] == (H, W, 3), f"{data}: frames are {frames.shape[1:]}, the model wants {(H, W, 3)}"
        offset = int(episodes.max()) + 1
        parts.append((frames, instr, actions, episodes))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


def episode_spans(episodes):
    """(first, end) frame indices of each episode, in order."""
    bounds = np.flatnonzero(np.diff(episodes)) + 1
    return zip(np.r_[0, bounds], np.r_[bounds, len(episodes)])


def chunks(episodes, length):
    """Start indices of chunks of `length` consecutive frames of one episode."""
    starts = []
    for s, e in episode_spans(episodes):
        for c in range(s, e, length):
            starts.append((c, min(length, e - c), c == s))
    return starts


def preprocess(frames_u8):
    x = torch.from_numpy(frames_u8).float().div_(255.0)
    return ((x - MEAN) / STD).permute(0, 3, 1, 2).contiguous()


def train(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    frames, instr, actions, episodes = load(args.data)
    n_eps = int(episodes.max()) + 1
    val_eps = set(range(n_eps - max(1, n_eps // 10), n_eps))
    all_chunks = chunks(episodes, args.chunk)
    train_c = [c for c in all_chunks if int(episodes[c[0]]) not in val_eps]
    val_c = [c for c in all_chunks if int(episodes[c[0]]) in val_eps]
    print(f"{len(frames)} frames, {n_eps} episodes; {len(train_c)} train / {len(val_c)} val chunks")
    model = Model(args.widths)
    if args.init:
        model.load_state_dict(torch.load(args.init))
        print(f"fine-tuning from {args.init}")
    elif args.init_onnx:
        load_onnx_weights(model, args.init_onnx)
        print(f"fine-tuning from the engines in {args.init_onnx}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps_per_epoch = (len(train_c) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    scale = torch.tensor(ACTION_SCALE)
    instr_1h = np.eye(N_INSTR, dtype=np.float32)[instr]
    # The head state of a chunk that does not start its episode comes from
    # the previous chunk (stored after each pass, detached): truncated BPTT.
    h_store = {}
    # Weights of the auxiliary losses (reference, exits 1..N), summing to 1:
    # equal by default; --exit-weights leans on the exits a low budget uses.
    aux_w = torch.tensor((1.0,) + args.exit_weights)
    aux_w = aux_w / aux_w.sum()
    # Equal weights keep the plain mean, so earlier rounds reproduce exactly.
    equal_w = all(w == 1 for w in args.exit_weights)

    def run(batch, train_mode):
        L = args.chunk
        B = len(batch)
        idx = np.zeros((B, L), dtype=np.int64)
        mask = np.zeros((B, L), dtype=np.float32)
        for b, (s, n, _) in enumerate(batch):
            idx[b, :n] = np.arange(s, s + n)
            idx[b, n:] = s + n - 1
            mask[b, :n] = 1
        flat = idx.reshape(-1)
        img = preprocess(frames[flat])
        ins = torch.from_numpy(instr_1h[flat])
        if train_mode:
            # Photometric jitter: brightness and per-channel gain.
            g = 1 + 0.15 * torch.randn(len(flat), 1, 1, 1) + 0.05 * torch.randn(len(flat), 3, 1, 1)
            img = (img * STD + MEAN) * g
            img = (img - MEAN) / STD
        # Index 0 is the reference (embedding) feature, 1.. the exits.
        feats = model.features(img, ins).reshape(N_EXITS + 1, B, L, FEAT)
        target = torch.from_numpy(actions[flat]).reshape(B, L, 2) / scale
        m = torch.from_numpy(mask)
        h0 = torch.stack(
            [h_store.get(s, torch.zeros(HIDDEN)) if not first else torch.zeros(HIDDEN) for (s, _, first) in batch]
        )
        choice = torch.randint(1, N_EXITS + 1, (B, L))
        losses = []
        hs_rand = None
        # Modes 0..N_EXITS: the head on one exit's (or the reference's) feature
        # throughout; mode N_EXITS + 1: a random exit per step (DeeR).
        for mode in range(N_EXITS + 2):
            h = h0
            err = 0.0
            for t in range(L):
                if mode <= N_EXITS:
                    f = feats[mode, :, t]
                else:
                    f = feats[choice[:, t], torch.arange(B), t]
                a, h = model.head(f, h)
                e = ((a / scale - target[:, t]) ** 2).sum(-1)
                err = err + (e * m[:, t]).sum()
            losses.append(err / m.sum())
            if mode == N_EXITS + 1:
                hs_rand = h
        for b, (s, n, _) in enumerate(batch):
            h_store[s + n] = hs_rand[b].detach()
        per_exit = torch.stack(losses[: N_EXITS + 1])
        aux = per_exit.mean() if equal_w else (aux_w * per_exit).sum()
        return losses[N_EXITS + 1] + aux, per_exit[1:].detach()

    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        # Chunks of one episode in order within an epoch so the stored
        # state of chunk k is fresh for chunk k+1.
        order = np.random.permutation(len(train_c))
        tot = 0.0
        for i in range(0, len(order), args.batch):
            batch = [train_c[j] for j in order[i : i + args.batch]]
            loss, _ = run(batch, True)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item()
        model.eval()
        with torch.no_grad():
            per = torch.zeros(N_EXITS)
            nb = 0
            for i in range(0, len(val_c), args.batch):
                _, pe = run(val_c[i : i + args.batch], False)
                per += pe
                nb += 1
        print(
            f"epoch {epoch + 1}/{args.epochs} train {tot / steps_per_epoch:.4f} "
            f"val per exit {[round(float(x), 4) for x in per / max(nb, 1)]} ({time.time() - t0:.0f}s)",
            flush=True,
        )
    return model


def finish_onnx(path):
    """Stamps an exported ONNX file as this script's and checks it fully."""
    import onnx

    m = onnx.load(path)
    m.producer_name = "offramp-demo"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)


def export(model, out, seed, args):
    os.makedirs(out, exist_ok=True)
    model.eval()
    image = torch.zeros(1, 3, H, W)
    instruction = torch.zeros(1, N_INSTR)
    names = []
    x = None
    with torch.no_grad():
        for i, seg in enumerate(model.segments):
            path = os.path.join(out, f"segment{i}.onnx")
            if i == 0:
                inputs, in_names = (image, instruction), ["image", "instruction"]
                out_names = ["hidden0", "feature", "feature_ref"]
            else:
                inputs, in_names = (x,), [f"hidden{i - 1}"]
                out_names = [f"hidden{i}", "feature"]
            torch.onnx.export(
                seg, inputs, path, opset_version=OPSET, dynamo=False,
                input_names=in_names, output_names=out_names,
            )
            x = seg(*inputs)[0]
            names.append(f"segment{i}.onnx")
        torch.onnx.export(
            model.head, (torch.zeros(1, FEAT), torch.zeros(1, HIDDEN)), os.path.join(out, "head.onnx"),
            opset_version=OPSET, dynamo=False, input_names=["feature", "h_in"], output_names=["action", "h_out"],
        )
    for f in names + ["head.onnx"]:
        finish_onnx(os.path.join(out, f))
    weights = ""
    if any(w != 1 for w in args.exit_weights):
        weights = "; exit loss weights " + ",".join(f"{w:g}" for w in args.exit_weights)
    comment = (
        "Source description read by `offramp build --onnx`; written by",
        f"tools/train/train_demo.py (seed {seed}, segment widths {','.join(map(str, args.widths))},",
        f"{args.epochs} epochs on {args.data_desc}{weights}).",
    )
    criterion = [
        ("kind", "action-consistency"),
        ("continuous_dims", [0, 1]),
        "# DeeR: exit 0 compares its action with the head's on the embedding.",
        ("exit0_reference", "feature_ref"),
    ]
    with open(os.path.join(out, "model.toml"), "w") as f:
        f.write(
            model_toml.render(
                "demo-vla",
                names,
                criterion,
                comment=comment,
                preprocess={"mean": [MEAN] * 3, "std": [STD] * 3, "instruction": "instruction"},
            )
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, nargs="+", help="directories written by `offramp sim record`")
    ap.add_argument("--init", help="start from these weights (a DAgger round)")
    ap.add_argument("--init-onnx", help="start from an exported engine set's ONNX weights")
    ap.add_argument("--checkpoint", default="offramp-demo.pt", help="where to save the weights")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--widths", default=",".join([str(D)] * N_EXITS),
        help="channels of each exit segment, e.g. 32,48,48,48 for a cheaper exit 1",
    )
    ap.add_argument(
        "--exit-weights", default=",".join(["1"] * N_EXITS),
        help="relative weights of exits 1..4's auxiliary losses (the embedding reference's is 1), e.g. 3,1,1,1",
    )
    args = ap.parse_args()
    try:
        args.exit_weights = tuple(float(w) for w in args.exit_weights.split(","))
    except ValueError:
        raise SystemExit(f"--exit-weights {args.exit_weights}: not comma-separated numbers")
    if len(args.exit_weights) != N_EXITS or any(not (w >= 0) for w in args.exit_weights):
        raise SystemExit(f"--exit-weights {args.exit_weights}: need {N_EXITS} weights, each at least 0")
    args.widths = tuple(int(w) for w in args.widths.split(","))
    if len(args.widths) != N_EXITS or any(w <= 0 or w % HEADS or w > D for w in args.widths):
        raise SystemExit(f"--widths {args.widths}: need {N_EXITS} widths, each a multiple of {HEADS}, at most {D}")
    descs = []
    for d in args.data:
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
        descs.append(f"{meta['episodes']} episodes from seed {meta['first_seed']}")
    args.data_desc = " + ".join(descs)
    model = train(args)
    torch.save(model.state_dict(), args.checkpoint)
    export(model, args.out, args.seed, args)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
