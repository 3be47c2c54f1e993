"""Video output: uint8 conversion, mp4/gif round trips, contact sheets, plots."""

import imageio.v2 as imageio
import numpy as np
import pytest

from syncos_jax import video


def test_to_uint8_maps_the_pixel_range():
    x = np.array([-1.0, -0.5, 0.0, 1.0, 2.0, -3.0], np.float32).reshape(1, 1, 6, 1).repeat(3, -1)
    np.testing.assert_array_equal(video.to_uint8(x)[0, 0, :, 0], [0, 64, 128, 255, 255, 0])
    u = np.zeros((2, 4, 4, 3), np.uint8)
    assert video.to_uint8(u) is u
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        video.to_uint8(np.zeros((4, 4, 3)))


def test_gif_and_mp4_round_trip(tmp_path):
    frames = np.linspace(-1, 1, 5)[:, None, None, None] * np.ones((5, 8, 8, 3))
    video.write_gif(str(tmp_path / "a.gif"), frames, scale=2)
    gif = imageio.mimread(str(tmp_path / "a.gif"))
    assert len(gif) == 5 and gif[0].shape[:2] == (16, 16)
    np.testing.assert_allclose([g[..., :3].mean() for g in gif], video.to_uint8(frames).reshape(5, -1).mean(1), atol=2)
    video.write_mp4(str(tmp_path / "a.mp4"), frames, scale=2)
    mp4 = imageio.mimread(str(tmp_path / "a.mp4"))
    assert len(mp4) == 5 and mp4[0].shape[:2] == (16, 16)


def test_contact_sheet_lays_out_frames_and_segments():
    frames = np.zeros((10, 8, 8, 3), np.float32)
    frames[3] = 1.0  # a white frame
    plain = video.contact_sheet(frames, columns=4, scale=2)
    labelled = video.contact_sheet(frames, columns=4, scale=2, segments=[(0, 5, "first"), (5, 10, "second")], title="t")
    assert plain.dtype == np.uint8 and plain.shape[2] == 3
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] == plain.shape[1]
    # frame 3 is the fourth tile of the first row: its pixels are white
    x0 = 4 + 3 * (16 + 4)
    assert (plain[4 : 4 + 16, x0 : x0 + 16] == 255).all()
    assert (plain[4 : 4 + 16, 4 : 4 + 16] == 127).all() or (plain[4 : 4 + 16, 4 : 4 + 16] == 128).all()


def test_line_plot_writes_a_png(tmp_path):
    video.line_plot_png(str(tmp_path / "p.png"), np.arange(100), np.exp(-np.arange(100) / 30), log_y=True, title="loss")
    img = imageio.imread(str(tmp_path / "p.png"))
    assert img.shape[:2] == (400, 640)
    with pytest.raises(ValueError, match="equal length"):
        video.line_plot_png(str(tmp_path / "q.png"), [1, 2, 3], [1, 2])
