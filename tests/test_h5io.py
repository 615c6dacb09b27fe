import json

import numpy as np
import pytest

from emotion.core import h5io
from emotion.core.errors import LabelError, SchemaError


def _write_audio_like(path, **overrides):
    with h5io.create(path, h5io.PREPROCESSED_AUDIO, config={"x": 1}) as f:
        for a in h5io.PREPROCESSED_AUDIO.attrs:
            f.attrs[a] = 1
        f.create_dataset("features/fixed", data=np.zeros((2, 4, 5), np.float32))
        f.create_dataset("labels", data=np.zeros(2, np.int16))
        for name in ("paths", "speakers", "splits"):
            h5io.write_strings(f, name, ["a", "b"])
        f.create_dataset("durations", data=np.ones(overrides.get("n_durations", 2), np.float32))
        f.create_dataset("waveforms/start", data=np.array([0, 3], np.int64))
        f.create_dataset("waveforms/length", data=np.array([3, 2], np.int64))
        f.create_dataset("waveforms/samples", data=np.arange(5, dtype=np.float32))
        for k, v in overrides.get("attrs", {}).items():
            f.attrs[k] = v


def test_round_trip_and_attributes(tmp_path):
    path = tmp_path / "a.h5"
    _write_audio_like(path)
    with h5io.open_checked(path, h5io.PREPROCESSED_AUDIO) as f:
        assert h5io.read_strings(f["paths"]) == ["a", "b"]
        assert json.loads(f.attrs["config"]) == {"x": 1}
        assert "numpy" in json.loads(f.attrs["versions"])
        assert f.attrs["stage"] == "preprocessing_audio.py"
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_failure_inside_create_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.h5"
    _write_audio_like(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), h5io.create(path, h5io.PREPROCESSED_AUDIO, config={}) as f:
        f.create_dataset("labels", data=np.zeros(3))
        raise RuntimeError("disk full")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_keyboard_interrupt_inside_create_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), h5io.create(tmp_path / "b.h5", h5io.PREPROCESSED_AUDIO,
                                                       config={}):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_missing_file_names_the_stage(tmp_path):
    with pytest.raises(SchemaError, match="run preprocessing_audio.py first"):
        h5io.open_checked(tmp_path / "none.h5", h5io.PREPROCESSED_AUDIO)


def test_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(SchemaError, match="not a readable HDF5"):
        h5io.open_checked(tmp_path / "x.h5", h5io.PREPROCESSED_AUDIO)


def test_wrong_schema(tmp_path):
    _write_audio_like(tmp_path / "a.h5")
    with pytest.raises(SchemaError, match="not preprocessed_images"):
        h5io.open_checked(tmp_path / "a.h5", h5io.PREPROCESSED_IMAGES)


def test_wrong_schema_version(tmp_path):
    _write_audio_like(tmp_path / "a.h5", attrs={"schema_version": 99})
    with pytest.raises(SchemaError, match="version 99"):
        h5io.open_checked(tmp_path / "a.h5", h5io.PREPROCESSED_AUDIO)


def test_wrong_label_names(tmp_path):
    _write_audio_like(tmp_path / "a.h5", attrs={"label_names": json.dumps(["happy", "sad"])})
    with pytest.raises(LabelError, match="labels"):
        h5io.open_checked(tmp_path / "a.h5", h5io.PREPROCESSED_AUDIO)


def test_waveforms_are_read_back_clip_by_clip(tmp_path):
    path = tmp_path / "a.h5"
    _write_audio_like(path)
    with h5io.open_checked(path, h5io.PREPROCESSED_AUDIO) as f:
        np.testing.assert_array_equal(h5io.read_waveform(f, 0), [0, 1, 2])
        np.testing.assert_array_equal(h5io.read_waveform(f, 1), [3, 4])


def test_inconsistent_lengths(tmp_path):
    _write_audio_like(tmp_path / "a.h5", n_durations=3)
    with pytest.raises(SchemaError, match="differ in length"):
        h5io.open_checked(tmp_path / "a.h5", h5io.PREPROCESSED_AUDIO)


def test_missing_dataset(tmp_path):
    path = tmp_path / "a.h5"
    _write_audio_like(path)
    import h5py

    with h5py.File(path, "a") as f:
        del f["speakers"]
    with pytest.raises(SchemaError, match="lacks speakers"):
        h5io.open_checked(path, h5io.PREPROCESSED_AUDIO)


def test_appender_streams_in_batches(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        app = h5io.Appender(f.create_group("g"), {"x": ((3,), np.float32), "s": ((), h5io.STR)})
        app.append(x=np.ones((2, 3)), s=["a", "b"])
        app.append(x=np.zeros((1, 3)), s=["c"])
        assert f["g/x"].shape == (3, 3) and app.n == 3
        assert h5io.read_strings(f["g/s"]) == ["a", "b", "c"]
        with pytest.raises(ValueError):
            app.append(x=np.ones((1, 3)))


def test_read_images_gives_unit_floats_for_both_dtypes(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["u"] = np.array([[0, 255]], np.uint8)
        f["f"] = np.array([[0.0, 1.0]], np.float32)
        np.testing.assert_allclose(h5io.read_images(f["u"], slice(None)), [[0.0, 1.0]])
        np.testing.assert_allclose(h5io.read_images(f["f"], slice(None)), [[0.0, 1.0]])
