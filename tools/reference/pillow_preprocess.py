#!/usr/bin/env python3
"""Reference preprocessing for offramp's tests: real photographs from
scikit-image's bundled sample data, resized with Pillow's BILINEAR on float
images (the antialiased triangle filter), scaled to [0, 1], normalised with
(x - mean) / std and laid out CHW.

    python3 tools/reference/pillow_preprocess.py OUT_DIR W H MEAN STD

Writes, per image, NAME.rgb (u8 HWC), NAME.ref (f32 little-endian CHW) and
index.json listing name, width and height. Needs numpy, pillow, scikit-image.
"""
import json
import os
import sys

import numpy as np
from PIL import Image
from skimage import data

out, W, H, mean, std = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
os.makedirs(out, exist_ok=True)
index = []
for name in ["astronaut", "chelsea", "coffee", "rocket"]:
    img = getattr(data, name)()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
    h, w, _ = img.shape
    chans = []
    for c in range(3):
        f = Image.fromarray(img[:, :, c].astype(np.float32), mode="F")
        chans.append(np.asarray(f.resize((W, H), Image.BILINEAR), dtype=np.float32))
    ref = ((np.stack(chans) / 255.0 - mean) / std).astype("<f4")
    img.tofile(os.path.join(out, name + ".rgb"))
    ref.tofile(os.path.join(out, name + ".ref"))
    index.append({"name": name, "width": w, "height": h})
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
