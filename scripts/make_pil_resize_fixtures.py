#!/usr/bin/python3
"""Writes the PIL resize fixtures of tests/data/pil_resize/ (read by tests/data/transforms_test).

Run with Debian's /usr/bin/python3 (Pillow 9.4, package python3-pil) from the repository root:
    /usr/bin/python3 scripts/make_pil_resize_fixtures.py
LAVT resizes with torchvision 0.8's Resize on PIL images, i.e. Image.resize(size, BILINEAR) for
the image and NEAREST for the mask (a mode "P" image); data.resize_filter: pil reproduces both.
It writes, as PNG (RGB images, 8-bit grey masks with values 0/1):
    noise_37x53.png        uniform random RGB, 37 wide, 53 high
    smooth_64x48.png       a smooth RGB gradient, 64 wide, 48 high
    mask_50x30.png         a random 0/1 mask, 50 wide, 30 high
    <input>_to_<W>x<H>.png PIL's resize of each input to 24x24, 96x96 and 45x19 (images) or
                           20x20, 96x96 and 45x19 (mask): downscale, upscale, non-square.
The output is the same on every run (fixed seed).
"""
import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'data', 'pil_resize')
IMAGE_TARGETS = [(24, 24), (96, 96), (45, 19)]
MASK_TARGETS = [(20, 20), (96, 96), (45, 19)]


def smooth(width, height):
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [x / (width - 1) * 255, y / (height - 1) * 255,
                127.5 + 127.5 * np.sin(x / 9.0) * np.cos(y / 7.0)]
    return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def save(array, mode, name):
    Image.fromarray(array, mode).save(os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    images = {
        'noise_37x53': rng.integers(0, 256, (53, 37, 3), dtype=np.uint8),
        'smooth_64x48': smooth(64, 48),
    }
    for name, array in images.items():
        save(array, 'RGB', name + '.png')
        for w, h in IMAGE_TARGETS:
            resized = Image.fromarray(array, 'RGB').resize((w, h), Image.BILINEAR)
            save(np.asarray(resized), 'RGB', f'{name}_to_{w}x{h}.png')
    mask = rng.integers(0, 2, (30, 50), dtype=np.uint8)
    save(mask, 'L', 'mask_50x30.png')
    for w, h in MASK_TARGETS:
        # As LAVT: the target is a mode "P" image (PIL resizes "P" with NEAREST whatever asked).
        resized = Image.fromarray(mask, 'P').resize((w, h), Image.NEAREST)
        save(np.asarray(resized), 'L', f'mask_50x30_to_{w}x{h}.png')
    print('wrote', len(os.listdir(OUT)), 'files to', os.path.normpath(OUT))


if __name__ == '__main__':
    main()
