"""Video output: frames to uint8, mp4 / gif via imageio, contact sheets and simple line plots.

Frames are ``[F, H, W, 3]`` floats in ``[−1, 1]`` (the toy model's pixel space) or uint8.
Drawing (text labels, plot axes) uses Pillow, which imageio already depends on.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["contact_sheet", "line_plot_png", "to_uint8", "write_gif", "write_mp4"]


def to_uint8(frames) -> np.ndarray:
    """``[F, H, W, 3]`` in ``[−1, 1]`` (or already uint8) → uint8 ``[F, H, W, 3]``."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be [F, H, W, 3] (or 1 channel), got shape {frames.shape}")
    return np.round((np.clip(frames, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    return frames.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else frames


def write_mp4(path: str, frames, fps: int = 8, scale: int = 8) -> None:
    """Writes an H.264 mp4 (via imageio-ffmpeg), each frame upscaled ``scale``× (nearest)."""
    import imageio.v2 as imageio

    data = _upscale(to_uint8(frames), scale)
    with warnings.catch_warnings():
        # imageio-ffmpeg starts ffmpeg with subprocess; Python warns about forking a process that
        # runs JAX threads, but the child only execs ffmpeg.
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error") as w:
            for frame in data:
                w.append_data(frame)


def write_gif(path: str, frames, fps: int = 8, scale: int = 4) -> None:
    """Writes a looping gif, each frame upscaled ``scale``× (nearest)."""
    import imageio.v2 as imageio

    imageio.mimsave(path, list(_upscale(to_uint8(frames), scale)), duration=1000.0 / fps, loop=0)


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(
    frames,
    *,
    columns: int = 8,
    scale: int = 3,
    segments: Optional[Sequence[tuple[int, int, str]]] = None,
    title: Optional[str] = None,
) -> np.ndarray:
    """Frames in a grid with their indices; uint8 image ``[H', W', 3]``.

    Args:
      frames: ``[F, H, W, 3]``.
      columns: frames per row.
      scale: nearest-neighbour upscaling of each frame.
      segments: ``(first_frame, end_frame, label)`` per segment (e.g. the local prompt); each
        frame's tile is tinted with its segment's colour bar and the labels are listed below.
      title: a line of text above the grid.
    """
    data = _upscale(to_uint8(frames), scale)
    F, h, w, _ = data.shape
    rows = -(-F // columns)
    pad, label_h, bar_h = 4, 14, 4
    palette = [(230, 80, 60), (60, 140, 230), (90, 180, 90), (220, 170, 40), (160, 90, 200), (40, 180, 180)]
    font = _font()
    seg_lines = 0 if not segments else len(segments)
    top = 18 if title else 0
    width = columns * (w + pad) + pad
    height = top + rows * (h + label_h + bar_h + pad) + pad + 16 * seg_lines
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((pad, 2), title, fill=(0, 0, 0), font=font)
    seg_of = np.full(F, -1)
    for s, (a, b, _) in enumerate(segments or ()):
        seg_of[max(0, a) : min(F, b)] = s
    for i in range(F):
        r, c = divmod(i, columns)
        x = pad + c * (w + pad)
        y = top + pad + r * (h + label_h + bar_h + pad)
        img.paste(Image.fromarray(data[i]), (x, y))
        if seg_of[i] >= 0:
            draw.rectangle([x, y + h, x + w - 1, y + h + bar_h - 1], fill=palette[seg_of[i] % len(palette)])
        draw.text((x + 1, y + h + bar_h), str(i), fill=(0, 0, 0), font=font)
    y0 = top + pad + rows * (h + label_h + bar_h + pad)
    for s, (a, b, label) in enumerate(segments or ()):
        y = y0 + 16 * s
        draw.rectangle([pad, y + 3, pad + 10, y + 12], fill=palette[s % len(palette)])
        draw.text((pad + 16, y), f"frames {a}-{b - 1}: {label}", fill=(0, 0, 0), font=font)
    return np.asarray(img)


def line_plot_png(
    path: str, x, y, *, title: str = "", log_y: bool = False, smooth: int = 50, size: tuple[int, int] = (640, 400)
) -> None:
    """Writes a simple line plot of ``y`` against ``x`` (raw in grey, moving average in blue)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x and y must be 1-D of equal length >= 2, got {x.shape} and {y.shape}")
    k = max(1, min(smooth, len(y)))
    ys = np.convolve(y, np.ones(k) / k, mode="valid")
    xs = x[k - 1 :]
    f = np.log10 if log_y else (lambda v: v)
    fy, fys = f(np.maximum(y, 1e-12)), f(np.maximum(ys, 1e-12))
    lo, hi = np.percentile(fy, 1), np.max(fys) if len(fys) else np.max(fy)
    hi = max(hi, np.percentile(fy, 95))
    if hi <= lo:
        hi = lo + 1.0
    W, H = size
    left, right, top, bottom = 60, 15, 25, 35
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font()

    def px(xv, yv):
        u = left + (xv - x[0]) / max(x[-1] - x[0], 1e-12) * (W - left - right)
        v = top + (1 - (np.clip(yv, lo, hi) - lo) / (hi - lo)) * (H - top - bottom)
        return list(zip(u.tolist(), v.tolist()))

    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for frac in np.linspace(0, 1, 5):
        yv = lo + frac * (hi - lo)
        v = top + (1 - frac) * (H - top - bottom)
        d.line([left - 4, v, left, v], fill=(0, 0, 0))
        d.text((2, v - 6), f"{10 ** yv:.3g}" if log_y else f"{yv:.3g}", fill=(0, 0, 0), font=font)
    for frac in np.linspace(0, 1, 5):
        xv = x[0] + frac * (x[-1] - x[0])
        u = left + frac * (W - left - right)
        d.line([u, H - bottom, u, H - bottom + 4], fill=(0, 0, 0))
        d.text((u - 10, H - bottom + 6), f"{xv:.0f}", fill=(0, 0, 0), font=font)
    d.line(px(x, fy), fill=(190, 190, 190))
    if len(xs) > 1:
        d.line(px(xs, fys), fill=(30, 80, 220), width=2)
    d.text((left, 5), title, fill=(0, 0, 0), font=font)
    tmp = path + ".tmp.png"
    img.save(tmp)
    os.replace(tmp, path)
