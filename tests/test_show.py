"""One-galaxy view: the model run on the right cutout, the pose drawn where the catalogue says, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catalogs.fits_io import read_catalog, write_catalog
from pipeline.cli import main
from pipeline.errors import BadInputError
from pipeline.show import show_galaxy, view_galaxy


def model_catalogue(store, checkpoint, out, *, seed: int = 0):
    """A catalogue of the model's pose and latents for every store cutout, rows shuffled (so that a
    reader must match by id), with the checkpoint's SHA-256 in its header."""
    import torch

    from pipeline.checkpoint import file_sha256, load_model
    from pipeline.conventions import store_to_cutout_pixels, theta_to_pa
    from pipeline.data.store import open_store
    from pipeline.predict import predict_batch

    st = open_store(store)
    info = st.info
    images = st.read_images(0, len(st)).astype(np.float32) / 255.0
    model, _ = load_model(checkpoint)
    with torch.inference_mode():
        p = predict_batch(model, torch.from_numpy(images))
    o = np.random.default_rng(seed).permutation(len(st))
    theta = (p.theta_deg % 360.0).astype(np.float32)
    cols = {"id": np.asarray(np.asarray(st.ids).tolist(), dtype=np.str_)[o], "ra": np.asarray(st.ra)[o],
            "dec": np.asarray(st.dec)[o],
            "x_pix": store_to_cutout_pixels(p.x_pix, crop_start=info.crop_start_x, crop_size=info.crop_size,
                                            size=info.size)[o],
            "y_pix": store_to_cutout_pixels(p.y_pix, crop_start=info.crop_start_y, crop_size=info.crop_size,
                                            size=info.size)[o],
            "theta_deg": theta[o], "pa_deg": theta_to_pa(theta)[o],
            "moment_pa_deg": theta_to_pa(p.moment_theta_deg)[o], "moment_axis_ratio": p.moment_axis_ratio[o],
            **{f"z_{k}": p.z[o, k] for k in range(p.z.shape[1])}, "recon_mse": p.recon_mse[o],
            "flags": np.where(p.moment_axis_ratio > 0.9, 1, 0).astype(np.int16)[o]}
    return write_catalog(cols, out, latent_dim=p.z.shape[1], partial=True,
                         header={"checkpoint_sha256": file_sha256(checkpoint), "config": {"note": "test"}})


@pytest.fixture(scope="module")
def shown(demo_run, tmp_path_factory):
    from astropy.table import vstack

    root = tmp_path_factory.mktemp("show")
    cat = model_catalogue(demo_run["store"], demo_run["checkpoint"], root / "cat.fits")
    table = read_catalog(cat)
    ghost = table[:1].copy()
    ghost["id"] = ["GHOST"]
    with_ghost = write_catalog(vstack([table, ghost]), root / "ghost.fits", latent_dim=int(table.meta["LATDIM"]),
                               partial=True, header={"checkpoint_sha256": table.meta["CKPTSHA"],
                                                     "config": {"note": "test"}})
    return {"root": root, "cat": cat, "table": table, "ghost": with_ghost, **demo_run}


def test_view_runs_the_model_on_the_galaxy_of_that_id(shown):
    table = shown["table"]
    for row in (3, 57):
        ident = str(table["id"][row])
        view = view_galaxy(shown["cat"], ident, shown["store"], shown["checkpoint"])
        # the residual is the one inference measured for this id (the cutout was matched by id)
        assert float((view.residual ** 2).mean()) == pytest.approx(float(table["recon_mse"][row]), rel=1e-3)
        # the arrow starts at the catalogue centroid and points along theta_deg, CCW as displayed (y down)
        (x0, y0), (x1, y1) = view.arrow
        assert np.rad2deg(np.arctan2(-(y1 - y0), x1 - x0)) % 360 == pytest.approx(float(table["theta_deg"][row]),
                                                                                  abs=1e-3)
        scale = 32 / 64  # store size / crop: the catalogue's cutout pixels are 2 store pixels
        assert x0 == pytest.approx((float(table["x_pix"][row]) + 0.5 - 32) * scale - 0.5, abs=1e-4)
        assert y0 == pytest.approx((float(table["y_pix"][row]) + 0.5 - 32) * scale - 0.5, abs=1e-4)
        assert any(line.startswith("x_pix = ") and line.endswith(" pix") for line in view.lines)
        assert any(line.startswith("theta_deg = ") and line.endswith(" deg") for line in view.lines)


def test_show_writes_a_png_and_cli(shown, tmp_path, capsys):
    ident = str(shown["table"]["id"][5])
    png = show_galaxy(shown["cat"], ident, shown["store"], shown["checkpoint"], out=tmp_path / "a.png")
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.width > 600 and (tmp_path / "a.png").read_bytes() == png
    out = tmp_path / "b.png"
    argv = ["show", str(shown["cat"]), "--id", ident, "--store", str(shown["store"]), "--checkpoint",
            str(shown["checkpoint"]), "--out", str(out)]
    assert main(argv) == 0 and out.stat().st_size > 10_000
    assert main(argv) == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("which, ident, message", [
    ("cat", "NOPE", "id 'NOPE' is not in"),
    ("ghost", "GHOST", "1 id(s) are not in the store"),
])
def test_show_bad_id_is_one_line_exit_2(shown, tmp_path, capsys, which, ident, message):
    out = tmp_path / "x.png"
    assert main(["show", str(shown[which]), "--id", ident, "--store", str(shown["store"]), "--checkpoint",
                 str(shown["checkpoint"]), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err.splitlines()[0]
    assert not out.exists()
    with pytest.raises(BadInputError):
        show_galaxy(shown[which], ident, shown["store"], shown["checkpoint"])
