"""Nixtla's statsforecast on exactly the backtest's series, origins and horizon.

Reads a run's `clean/resampled.parquet` and `evaluate/forecasts.parquet` (the test part's
origins of the model), fits AutoETS, AutoTheta and MSTL per series, target and segment on
the last `--history` steps before the segment's first test origin (a week by default: a
longer history makes ETS and MSTL slow without helping them much), forecasts the horizon
from every origin with the fitted parameters over the same length of history up to it
(statsforecast's `forward`), and writes `key, resource, origin, step, method, forecast`
as Parquet. AppLearner's backtest scores the file with its own metric code
(`evaluate.backtest` `external:`), so the numbers sit in the same leaderboard.

    python benches/statsforecast_reference.py RUN_DIR OUT.parquet --season 288 [--jobs 2]
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def models(season):
    from statsforecast.models import MSTL, AutoETS, AutoTheta

    # Seasons longer than statsforecast's ETS handles well are left to MSTL, whose
    # decomposition takes the day; ETS and Theta see the day as their season too.
    return {
        "statsforecast_autoets": lambda: AutoETS(season_length=season),
        "statsforecast_autotheta": lambda: AutoTheta(season_length=season),
        "statsforecast_mstl": lambda: MSTL(season_length=season),
    }


def segments(times, step):
    """Start positions of the runs of points `step` apart."""
    breaks = np.flatnonzero(np.diff(times) != step) + 1
    return np.concatenate([[0], breaks])


def one_series(job):
    key, resource, times, values, origins, horizon, step, season, keep = job
    starts = segments(times, step)
    out = []
    position = {t: i for i, t in enumerate(times)}
    for name, make in models(season).items():
        fitted_segment = None
        model = None
        for origin in origins:
            end = position[origin] + 1
            seg = starts[np.searchsorted(starts, end - 1, side="right") - 1]
            history = values[max(seg, end - keep) : end].astype(np.float64)
            if fitted_segment != seg:
                model = make()
                try:
                    model.fit(history)
                except Exception:  # too short or flat for this model: no forecast
                    model = None
                fitted_segment = seg
            if model is None:
                forecast = np.full(horizon, np.nan)
            else:
                try:
                    forecast = model.forward(y=history, h=horizon)["mean"]
                except Exception:
                    forecast = np.full(horizon, np.nan)
            for h in range(horizon):
                out.append((key, resource, int(origin), h + 1, name, float(forecast[h])))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("out")
    p.add_argument("--season", type=int, required=True, help="steps of the season (288 at 5 minutes)")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument(
        "--history", type=int, default=2016, help="steps of history each model sees (2016: a week at 5 minutes)"
    )
    p.add_argument("--series", type=int, default=0, help="only the first N series and targets (a quick check)")
    a = p.parse_args()
    began = time.time()
    resampled = pq.read_table(os.path.join(a.run, "clean", "resampled.parquet")).to_pandas()
    forecasts = pq.read_table(
        os.path.join(a.run, "evaluate", "forecasts.parquet"),
        columns=["part", "method", "key", "resource", "origin", "step"],
        filters=[("part", "=", "test"), ("method", "=", "model")],
    ).to_pandas()
    horizon = int(forecasts["step"].max())
    ms = lambda s: s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64)
    resampled["t"] = ms(resampled["timestamp"])
    forecasts["t"] = ms(forecasts["origin"])
    step = int(np.median(np.diff(np.sort(resampled["t"].unique()))))
    jobs = []
    for (key, resource), o in forecasts.groupby(["key", "resource"]):
        s = resampled[resampled["key"] == key].sort_values("t")
        jobs.append(
            (key, resource, s["t"].to_numpy(), s[resource].to_numpy(), np.sort(o["t"].unique()), horizon, step, a.season, a.history)
        )
    jobs = jobs[: a.series or len(jobs)]
    rows = []
    with ProcessPoolExecutor(max_workers=a.jobs) as pool:
        for r in pool.map(one_series, jobs):
            rows.extend(r)
    table = pa.table(
        {
            "key": [r[0] for r in rows],
            "resource": [r[1] for r in rows],
            "origin": pa.array([r[2] for r in rows], pa.timestamp("ms", tz="UTC")),
            "step": pa.array([r[3] for r in rows], pa.uint32()),
            "method": [r[4] for r in rows],
            "forecast": [r[5] for r in rows],
        }
    )
    pq.write_table(table, a.out)
    print(
        f'{{"tool": "statsforecast", "series": {len(jobs)}, "rows": {len(rows)}, "seconds": {time.time() - began:.1f}}}',
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
