"""tools/compare_runs.py: the gaps between two metrics.csv files, computed here by hand on small tables,
and one-line refusals."""

from __future__ import annotations

import pytest

from tools import compare_runs as cr

HEADER = "epoch,loss,fer_acc,utk_age_mae,utk_gender_acc,train_s,eval_s"


def _write(path, rows):
    path.write_text(HEADER + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_gaps_table_and_timing(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", [(1, 2.0, 0.50, 8.0, 0.80, 10, 1), (2, 1.0, 0.60, 7.0, 0.90, 10, 1)])
    b = _write(tmp_path / "b.csv", [(1, 2.0, 0.52, 7.0, 0.80, 20, 2), (2, 1.1, 0.58, 7.5, 0.90, 30, 2)])
    g = cr.gaps(cr.read_rows(a), cr.read_rows(b), start=1)
    assert g["max_loss_gap"] == pytest.approx(0.1)
    assert g["fer_acc_mean_abs"] == pytest.approx(2.0) and g["fer_acc_mean_signed"] == pytest.approx(0.0)
    assert g["utk_age_mae_mean_signed"] == pytest.approx((-1.0 + 0.5) / 2)
    assert g["fer_acc_a_moves"] == pytest.approx(10.0)  # only epoch 2 has a predecessor in A
    assert cr.main([str(a), str(b), "--epochs", "2", "--from", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 1.000 / 1.100 | 60.0 / 58.0 % | 7.00 / 7.50 | 90.0 / 90.0 % |" in out
    assert "B: 25.0 s + 2.0 s an epoch" in out


@pytest.mark.parametrize("content", [None, "no,header\n1,2\n", HEADER + "\n1,x,0.5,8,0.8,1,1\n"])
def test_unreadable_metrics_are_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.csv"
    if content is not None:
        bad.write_text(content)
    good = _write(tmp_path / "a.csv", [(1, 2.0, 0.5, 8.0, 0.8, 10, 1)])
    assert cr.main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare_runs: ") and "\n" not in err


def test_runs_without_a_shared_epoch_are_refused(tmp_path, capsys):
    a = _write(tmp_path / "a.csv", [(1, 2.0, 0.5, 8.0, 0.8, 10, 1)])
    assert cr.main([str(a), str(a), "--from", "5"]) == 2
    assert "share no epoch from 5 on" in capsys.readouterr().err
