# Choosing `auto` on the first half of each series' validation origins and scoring it on the
# second (relative MAE: ÷ the last value's on those steps), with and without blends of the
# model and a baseline. Reads a run's evaluate/forecasts.parquet; needs duckdb, pandas, numpy.
#   python3 benches/blend_halves.py runs/<run>/evaluate/forecasts.parquet
import sys, duckdb, numpy as np
path = sys.argv[1]
df = duckdb.sql(f"""select method, key, resource, epoch(origin) as o, step, actual, forecast
  from '{path}' where part='validation' and method in
  ('model','last_value','seasonal_naive','moving_average','holt_winters')""").df()
base = ['last_value','seasonal_naive','moving_average','holt_winters']
res = {}
for (key, r), g in df.groupby(['key','resource']):
    piv = g.pivot_table(index=['o','step'], columns='method', values='forecast')
    act = g[g.method=='model'].set_index(['o','step'])['actual'].reindex(piv.index)
    origins = np.sort(piv.index.get_level_values(0).unique())
    if len(origins) < 4: continue
    cut = origins[len(origins)//2]
    ok = act.notna().values
    h1 = (piv.index.get_level_values(0) < cut) & ok
    h2 = (piv.index.get_level_values(0) >= cut) & ok
    a = act.values
    mae = lambda f, h: np.mean(np.abs(a[h] - f[h]))
    plain = {m: piv[m].values for m in ['model'] + base}
    grid = dict(plain)
    for b in base:
        for w in (0.25, 0.5, 0.75):
            grid[f'{b}@{w}'] = w*piv['model'].values + (1-w)*piv[b].values
    naive = mae(piv['last_value'].values, h2)
    if naive == 0: continue
    pick = lambda c: c[min(c, key=lambda m: mae(c[m], h1))]
    bestb = min(base, key=lambda m: mae(plain[m], h1))
    out = {
      'model': plain['model'],
      'auto without blend': pick(plain),
      'auto, blends by w': pick(grid),
      'the blend alone': 0.5*plain['model'] + 0.5*plain[bestb],
      'auto with the blend': pick({**plain, 'h': 0.5*plain['model'] + 0.5*plain[bestb]}),
      'mean all 5': np.mean([plain[m] for m in plain], axis=0),
      'model+lv+hw': (plain['model']+plain['last_value']+plain['holt_winters'])/3,
    }
    for name, f in out.items():
        res.setdefault((r, name), []).append(mae(f, h2) / naive)
for (r, name), v in sorted(res.items()):
    print(f"{r:7s} {name:22s} mean {np.mean(v):.4f} median {np.median(v):.4f}")
