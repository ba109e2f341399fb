"""Property tests of the dataset file-name parsers (hypothesis): every name written in a
dataset's format parses back to its identity and camera, and near misses (a camera or pid
out of range, a mangled separator, a non-digit) are refused naming the file."""

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reidlab.data.datasets import dukemtmc, market1501
from reidlab.data.datasets.base import DatasetFormatError, parse_named_images

_folders = itertools.count()
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def market_name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    label = "-1" if pid == -1 else f"{pid:04d}"
    return f"{label}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg"


def duke_name(pid: int, cam: int, frame: int) -> str:
    return f"{pid:04d}_c{cam}_f{frame:07d}.jpg"


def parse_one(root: Path, name: str, fmt, cameras: int, max_pid: int | None):
    folder = root / f"case{next(_folders)}"
    folder.mkdir()
    (folder / name).write_bytes(b"")  # the parser reads names, not pixels
    return parse_named_images(folder, fmt, domain="d", num_cameras=cameras, max_pid=max_pid)


market_ids = st.one_of(st.just(-1), st.integers(0, market1501.MAX_PID))


@SETTINGS
@given(pid=market_ids, cam=st.integers(1, 6), seq=st.integers(1, 9),
       frame=st.integers(0, 999_999), box=st.integers(0, 99))
def test_market_names_round_trip(tmp_path, pid, cam, seq, frame, box):
    (record,) = parse_one(tmp_path, market_name(pid, cam, seq, frame, box),
                          market1501.NAME_FORMAT, 6, market1501.MAX_PID)
    assert (record.pid, record.camid) == (pid, cam - 1)


@SETTINGS
@given(pid=st.integers(0, 9999), cam=st.integers(1, 8), frame=st.integers(0, 9_999_999))
def test_duke_names_round_trip(tmp_path, pid, cam, frame):
    (record,) = parse_one(tmp_path, duke_name(pid, cam, frame), dukemtmc.NAME_FORMAT, 8, None)
    assert (record.pid, record.camid) == (pid, cam - 1)


def _near_misses(name: str) -> list[str]:
    """Names one edit away from a valid Market-1501 name that must not parse."""
    stem = name[:-4]
    return [
        stem.replace("_c", "_x", 1) + ".jpg",  # the camera's marker
        stem.replace("_c", "c", 1) + ".jpg",  # a separator dropped
        "a" + name,  # a non-digit in the pid
        stem + "_extra.jpg",  # a field too many
    ]


@SETTINGS
@given(pid=st.integers(0, market1501.MAX_PID), cam=st.integers(1, 6),
       seq=st.integers(1, 9), frame=st.integers(0, 999_999), box=st.integers(0, 99),
       which=st.integers(0, 3))
def test_market_near_misses_are_refused_naming_the_file(tmp_path, pid, cam, seq, frame,
                                                         box, which):
    bad = _near_misses(market_name(pid, cam, seq, frame, box))[which]
    with pytest.raises(DatasetFormatError, match="does not follow the d format") as err:
        parse_one(tmp_path, bad, market1501.NAME_FORMAT, 6, market1501.MAX_PID)
    assert bad in str(err.value)


@SETTINGS
@given(pid=st.integers(0, market1501.MAX_PID), seq=st.integers(1, 9),
       cam=st.one_of(st.just(0), st.integers(7, 9)))
def test_market_camera_out_of_range_is_refused(tmp_path, pid, seq, cam):
    name = market_name(pid, cam, seq, 1, 1)
    with pytest.raises(DatasetFormatError, match=rf"camera {cam} is outside 1\.\.6"):
        parse_one(tmp_path, name, market1501.NAME_FORMAT, 6, market1501.MAX_PID)


@SETTINGS
@given(pid=st.integers(market1501.MAX_PID + 1, 9999))
def test_market_pid_out_of_range_is_refused(tmp_path, pid):
    with pytest.raises(DatasetFormatError, match=f"pid {pid} is outside"):
        parse_one(tmp_path, market_name(pid, 1, 1, 1, 1), market1501.NAME_FORMAT, 6,
                  market1501.MAX_PID)
