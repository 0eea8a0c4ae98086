"""Independent check of r_reference.json (numpy/pandas only; not a pytest module).

Evaluates the heteroskedastic marginal log-likelihood densely, group by group
(V_i = Z_i Psi Z_i' + diag(exp(W_i a))), at the parameters stored for every
case/method/package -- fixef, re_cov and the log-linear vector ``a`` -- and compares
with the llf R reported.  Agreement to ~1e-10 confirms the parameter maps in the JSON
and the REML convention used by nlme / glmmTMB / lme4:

    llf_REML = -1/2 [ (n - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r ],
    r = y - X beta_GLS.

Run from the repository root:  python tests/results/check_r_reference.py
"""
import json
import os
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
d = json.load(open(os.path.join(HERE, 'r_reference.json')))
def M(m): return np.array(m['values'], float)
def loglik(y, X, Zs, groups, Psis, logs2, beta=None, reml=False):
    # Zs: list of (Z matrix, group labels) per RE term; build full V per top-level group
    n = len(y); top = groups
    ll = 0.0; XtVX = 0; XtVy = 0; parts = []
    for gval in np.unique(top):
        idx = np.where(top == gval)[0]
        V = np.diag(np.exp(logs2[idx]))
        for Z, lab, Psi in Zs:
            Zi = Z[idx]; li = lab[idx]
            for l in np.unique(li):
                j = np.where(li == l)[0]
                V[np.ix_(j, j)] += Zi[j] @ Psi @ Zi[j].T
        L = np.linalg.cholesky(V)
        parts.append((idx, L))
        Xi = np.linalg.solve(L, X[idx]); yi = np.linalg.solve(L, y[idx])
        XtVX = XtVX + Xi.T @ Xi; XtVy = XtVy + Xi.T @ yi
    bh = np.linalg.solve(XtVX, XtVy)
    b = bh if (beta is None or reml) else beta
    for idx, L in parts:
        r = np.linalg.solve(L, y[idx] - X[idx] @ b)
        ll += -0.5 * (len(idx) * np.log(2*np.pi) + 2*np.log(np.diag(L)).sum() + r @ r)
    if reml:
        p = X.shape[1]
        ll += -0.5 * np.linalg.slogdet(XtVX)[1] + 0.5 * p * np.log(2*np.pi)
    return ll, bh
hsb = pd.read_csv(os.path.join(ROOT, 'statsmodels_hetmixed', 'datasets', 'hsb', 'hsb.csv'))
sims = {k: pd.read_csv(os.path.join(HERE, 'data', f'{k}.csv')) for k in ['sim_cont','sim_slope','sim_vc']}
spec = {
 'hsb_null': ('hsb','mathach',['female'],[(['1'],'school')],[]),
 'hsb_female': ('hsb','mathach',['female'],[(['1'],'school')],['female']),
 'hsb_multi': ('hsb','mathach',['female','ses','sector'],[(['1'],'school')],['female','ses','sector']),
 'hsb_slope': ('hsb','mathach',['cses','meanses','sector'],[(['1','cses'],'school')],['sector','cses']),
 'sim_cont': ('sim_cont','y',['x'],[(['1'],'g')],['z','h','zh']),
 'sim_slope': ('sim_slope','y',['x','t'],[(['1','t'],'g')],['fb','fc','x']),
 'sim_vc': ('sim_vc','y',['x'],[(['1'],'g'),(['1'],'gc')],['z']),
 'sim_vc_hom': ('sim_vc','y',['x'],[(['1'],'g'),(['1'],'gc')],[]),
}
worst = 0.0
for case,(dn,yn,xs,res,ws) in spec.items():
    df = hsb if dn=='hsb' else sims[dn]
    if dn=='sim_vc': df = df.assign(gc=df.g*10+df.c)
    y = df[yn].values.astype(float); n=len(y)
    X = np.column_stack([np.ones(n)]+[df[c].values for c in xs]).astype(float)
    W = np.column_stack([np.ones(n)]+[df[c].values for c in ws]).astype(float)
    top = df[res[0][1]].values
    for meth in ['ML','REML']:
        for pk in ['glmmTMB','nlme']:
            f = d['cases'][case][meth][pk]
            a = np.array([f['a'][k] for k in d['cases'][case]['W_names']])
            recov = list(f['re_cov'].values())
            if pk=='nlme' and dn=='sim_vc': recov = [f['re_cov']['g'], f['re_cov']['c']]
            Zs = [(np.column_stack([np.ones(n) if c=='1' else df[c].values for c in cols]).astype(float), df[g].values, M(rc)) for (cols,g),rc in zip(res,recov)]
            beta = np.array(list(f['fixef'].values()))
            ll, bh = loglik(y, X, Zs, top, None, W@a, beta=beta, reml=(meth=='REML'))
            worst = max(worst, abs(ll - f['llf']))
            print(f"{case:11s} {meth:4s} {pk:7s} llf_R={f['llf']:.6f}  python={ll:.6f}  diff={ll-f['llf']:.2e}  |bhat-beta|={np.abs(bh-beta).max():.1e}")
print("max |llf_python - llf_R| = %.2e" % worst)
sys.exit(0 if worst < 1e-6 else 1)
